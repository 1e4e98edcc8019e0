"""The four-part texture, cross-validated: 10-fold bits per note over every chorale (the
quick-start recipe, so that it runs on 2 cores), with the mean and spread over folds, and the
information content of each voice given everything before it (the language writes a measure's
voices top down, so the alto's notes are predicted knowing the soprano's, the bass's knowing
all three: a harmonic expectancy no melody model gives).

    python bench/bench_folds.py                      # builds the transposed dataset in --work
    python bench/bench_folds.py --work runs/folds --json folds.json   # kept; a rerun resumes

Everything it trains goes to --work (default: a temporary folder, removed at the end).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _scripts import script  # noqa: E402
from scorelm import dataset, language  # noqa: E402
from scorelm.analysis import folds, information  # noqa: E402
from scorelm.analysis.report import Models  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--work", type=Path, help="where data and models go (default: a temporary folder)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu_quickstart.json"))
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--cpu-threads", type=int, default=0, help="train.py's cpu_threads (0: every core)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    temporary = None if args.work else tempfile.TemporaryDirectory(prefix="bench-folds-")
    work = args.work or Path(temporary.name)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data, models = work / "dataset", work / "folds"
    if not (data / "summary.json").is_file():
        script("generate_data.py", "--transpose", "--output", data, "--overwrite")
    if not (models / "cross_validation.json").is_file():
        resume = ["--resume"] if (models / folds.MANIFEST).is_file() else []
        script("train.py", "--config", args.config, "--dataset", data, "--output_dir", models, "--folds", args.folds,
               "--cpu_threads", args.cpu_threads, *resume)
    trained = time.perf_counter() - start
    cross = json.loads((models / "cross_validation.json").read_text())
    records = {folds.text_key(r["text"]): r for split in dataset.SPLITS
               for r in dataset.read_jsonl(data / f"{split}.jsonl") if r["transposition"] == "P1"}
    opened = Models.open(models)
    by_voice: dict[str, list[float]] = {}
    pitch_by_voice: dict[str, list[float]] = {}
    for fold in opened.manifest.models:
        _, tokenizer, _, vocabulary, predictor = opened.load(fold.name)
        for key in fold.held_out_keys:
            piece = language.parse(records[key]["text"])[0][0]
            names = language.part_names(piece.num_voices) if piece.num_voices == 4 else None
            if names is None:
                continue  # the per-voice figures are four-part writing's
            notes = information.note_information(piece, tokenizer, predictor, vocabulary)
            for note in notes:
                by_voice.setdefault(names[note.voice], []).append(note.information_content)
                if note.pitch is not None and not note.continues_tie:
                    pitch_by_voice.setdefault(names[note.voice], []).append(note.pitch_information_content)
    bits = cross["held_out_bits_per_note"]
    print(f"{args.folds}-fold cross-validation over {sum(len(m.held_out) for m in opened.manifest.models)} chorales "
          f"({Path(args.config).name}): bits per note {cross['mean']:.3f} (sd {cross['sd']:.3f} over folds; "
          f"folds {min(bits):.3f} to {max(bits):.3f})")
    print("per voice (four-part chorales), information content in bits: event per word, pitch per note")
    figures = {"bits_per_note": cross["mean"], "sd": cross["sd"], "per_fold": bits, "voices": {}}
    for name, values in by_voice.items():
        event = sum(values) / len(values)
        pitch = [v for v in pitch_by_voice.get(name, []) if math.isfinite(v)]
        figures["voices"][name] = {"event": event, "pitch": sum(pitch) / len(pitch), "words": len(values)}
        print(f"  {name:8s} event {event:6.3f}   pitch {sum(pitch) / len(pitch):6.3f}   ({len(values)} words)")
    print(f"training {trained:.0f} s, total {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
