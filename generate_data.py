"""Encode scores as ScoreLM text and write train/validation/test splits as JSON lines.

    python generate_data.py                      # every Bach chorale in music21's corpus
    python generate_data.py --transpose          # ... plus transposed copies of the training split
    python generate_data.py --input my_scores/   # your own files (MusicXML, MIDI, kern, ABC, ...)
    python generate_data.py --corpus palestrina  # a folder of music21's corpus (--corpus list)
    python generate_data.py --melody             # the chorales' sopranos alone (a melody corpus)
    python generate_data.py --melody --input kinder0.abc  # any score's top voice; an ABC file of many tunes
"""
from __future__ import annotations

import argparse
import difflib
import functools
import json
import math
import multiprocessing
import sys
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from scorelm import dataset, files, language
from scorelm.cli import UserError, check_can_write, quiet_worker, run, worker_count


def encode_all(sources: list[str], workers: int, melody: bool = False, instruments: str = "voices"
               ) -> tuple[list[dict], list[tuple[str, str]], Counter]:
    """Encode files in parallel (music21's parsing is the slow part). Returns the records,
    the (source, error) of each skipped file, and the encoder's losses summed."""
    records, skipped, losses = [], [], Counter()
    with multiprocessing.Pool(workers, initializer=quiet_worker) as pool:
        results = pool.imap_unordered(functools.partial(dataset.encode_file, melody=melody, instruments=instruments), sources, chunksize=4)
        for result in tqdm(results, total=len(sources), desc="encoding", unit="file", file=sys.stderr):
            losses.update(result.losses)
            if result.error:
                skipped.append((result.source, result.error))
                tqdm.write(f"warning: skipped {result.source}: {result.error}", file=sys.stderr)
            records.extend(result.records)
    return records, skipped, losses


def parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = [float(p) for p in text.split("/")]
    except ValueError:
        parts = []
    if len(parts) != 3 or not all(math.isfinite(p) and p >= 0 for p in parts) or sum(parts) <= 0:
        raise UserError(f"--split takes train/validation/test shares like 80/10/10, not {text!r}")
    total = sum(parts)
    return tuple(p / total for p in parts)


def summarize(splits: dict[str, list[dict]], skipped, losses, augmented: int, seconds: float) -> dict:
    pieces = [r for name in dataset.SPLITS for r in splits[name] if r["transposition"] == "P1"]
    tokens = [r["tokens"] for r in pieces]
    return {
        "pieces": len(pieces),
        "skipped": len(skipped),
        "skipped_files": [f"{source}: {error}" for source, error in skipped],
        "transposed_copies": augmented,
        "split_pieces": {name: len(splits[name]) for name in dataset.SPLITS},
        "split_tokens": {name: sum(r["tokens"] for r in splits[name]) for name in dataset.SPLITS},
        "tokens_per_piece": dataset.percentiles(tokens),
        "pieces_within_1024_tokens": sum(t <= 1024 for t in tokens) / max(1, len(tokens)),
        "vocabulary": len({w for name in dataset.SPLITS for r in splits[name] for w in r["text"].split()}),
        "encoder_losses": dict(losses),
        "seconds": round(seconds, 2),
    }


def print_summary(summary: dict, output: Path) -> None:
    lines = [
        f"pieces {summary['pieces']}, skipped {summary['skipped']}, transposed copies {summary['transposed_copies']}",
        "split pieces " + ", ".join(f"{k} {v}" for k, v in summary["split_pieces"].items()),
        "split tokens " + ", ".join(f"{k} {v}" for k, v in summary["split_tokens"].items()),
        "tokens per piece " + ", ".join(f"{k} {v:g}" for k, v in summary["tokens_per_piece"].items())
        + f"; {summary['pieces_within_1024_tokens']:.1%} within 1024",
        f"vocabulary {summary['vocabulary']} words",
    ]
    lines += [f"encoder: {count} {what}" for what, count in summary["encoder_losses"].items()]
    lines.append(f"wrote {output}/{{train,validation,test}}.jsonl in {summary['seconds']:.1f} s")
    print("\n".join(lines), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--input", nargs="+", metavar="PATH",
                        help="score files or folders to encode instead of the Bach chorales")
    parser.add_argument("--corpus", metavar="NAME",
                        help="a folder of music21's corpus instead of the Bach chorales (palestrina, monteverdi, "
                             "essenFolksong, ...; 'list' lists them); a file of several scores gives one piece each")
    parser.add_argument("--output", type=Path, default=Path("dataset"), help="output folder (default: dataset)")
    parser.add_argument("--split", default="80/10/10", help="train/validation/test shares (default: 80/10/10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    parser.add_argument("--transpose", action="store_true",
                        help="add the training pieces transposed to every key within a tritone that keeps "
                             "each voice in its range")
    parser.add_argument("--melody", action="store_true",
                        help="encode the top voice alone (a melody corpus: the chorales' sopranos, a song's tune)")
    parser.add_argument("--instruments", choices=language.INSTRUMENTS,
                        help="where some parts are named as voices, the parts beside them: doubling keeps each "
                             "that does not double a voice (a choir's piano; the default for --input and "
                             "--corpus), voices drops them all (the default for the Bach chorales, whose "
                             "instruments play colla parte or obbligato), all keeps every part")
    parser.add_argument("--limit", type=int, metavar="N", help="encode only the first N files")
    parser.add_argument("--workers", type=int, help="processes (default: one per core)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    args = parser.parse_args(argv)

    fractions = parse_fractions(args.split)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, not {args.workers}")
    if args.corpus and args.input:
        raise UserError("--corpus and --input each name what to encode: give one of them")
    if args.corpus == "list":
        for name, scores in dataset.corpus_folders().items():
            print(f"{name:24s} {len(scores):5d} files")
        return 0
    if args.corpus:
        folders = dataset.corpus_folders()
        if args.corpus not in folders:
            close = difflib.get_close_matches(args.corpus, list(folders), n=3)
            raise UserError(f"music21's corpus has no folder {args.corpus!r}"
                            + (f"; did you mean {', '.join(close)}?" if close else "; see --corpus list"))
        sources = folders[args.corpus]
    elif args.input:
        sources, missing = dataset.find_score_files(args.input)
        if missing:
            raise UserError(f"no such file or folder: {', '.join(missing)}")
        if not sources:
            raise UserError("no score files found in " + ", ".join(args.input))
    else:
        sources = dataset.bach_chorale_sources()
    if args.limit is not None:
        sources = sources[:max(0, args.limit)]
    for name in [f"{split}.jsonl" for split in dataset.SPLITS] + ["summary.json"]:
        check_can_write(args.output / name, args.overwrite)

    start = time.perf_counter()
    instruments = args.instruments or ("doubling" if args.input or args.corpus else "voices")
    records, skipped, losses = encode_all(sources, worker_count(args.workers), args.melody, instruments)
    if not records:
        raise UserError(f"none of the {len(sources)} files could be encoded")
    splits = dataset.split_records(records, fractions, args.seed)
    extra = dataset.transposed_copies(splits["train"]) if args.transpose else []
    splits["train"] = splits["train"] + extra

    args.output.mkdir(parents=True, exist_ok=True)
    for name in dataset.SPLITS:
        dataset.write_jsonl_atomic(args.output / f"{name}.jsonl", splits[name])
    summary = summarize(splits, skipped, losses, len(extra), time.perf_counter() - start)
    summary["arguments"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    files.write_text(args.output / "summary.json", json.dumps(summary, indent=1) + "\n")
    print_summary(summary, args.output)
    return 0


if __name__ == "__main__":
    run(main)
