"""Infilling on a split's chorales (issue 31), with a model trained to infill: for each chorale a
span of 2 to 4 measures in its middle (2, 3, 4, 2, ... by the chorale's place in the split).

1. How much the music after the span tells the model: the span's notes' bits given the music
   before and after it, against given the music before it alone (the same tokens scored both
   ways; infilling.span_bits).
2. The span written again (all voices, `infer.py --infill`'s defaults, one sample a chorale,
   seed = its place): valid without a repair, every word outside the span the chorale's own,
   and the whole pieces' music statistics beside the chorales' own.

    python bench/bench_infill.py --model score-lm --dataset dataset --split test

Targets (issue 31): valid with zero repairs 100%, outside the span identical 100%; the span's
bits per note given both sides clearly below given the music before it alone.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _model import trained_model  # noqa: E402
from scorelm import dataset, evaluation, infilling, language, lm, writing  # noqa: E402
from scorelm.cli import UserError  # noqa: E402

SHOWN = ("parallel_fifths_per_100_beats", "parallel_octaves_per_100_beats", "voice_crossings_per_100_beats",
         "spacing_errors_per_100_beats", "valid_measures_percent")


def middle_span(measures: int, place: int) -> tuple[int, int] | None:
    """Measures (0-based, end exclusive) of a 2- to 4-measure span in the middle of a piece, with at
    least one measure on either side; None for a piece too short."""
    length = 2 + place % 3
    if measures < length + 2:
        return None
    first = (measures - length) // 2
    return first, first + length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="score-lm")
    parser.add_argument("--dataset", default="dataset")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--pieces", type=int, default=0, help="the split's first N chorales (default: all)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    loaded = trained_model(args.model, args.device)
    if infilling.sentinel_ids(loaded.tokenizer) is None:
        sys.exit(f"{args.model} was not trained to infill (train_cfg.json's infill_share)")
    path = Path(args.dataset) / f"{args.split}.jsonl"
    if not path.is_file():
        sys.exit(f"no dataset in {args.dataset}/: run 'python generate_data.py' first (or pass --dataset)")
    texts = [record["text"] for record in dataset.read_records(path)]
    texts = texts[:args.pieces] if args.pieces else texts
    settings = loaded.settings(rules=writing.DEFAULT_RULES, particles=writing.FREE_PARTICLES)
    both = alone = notes = 0.0
    written, originals, valid, kept, skipped, refused = [], [], 0, 0, 0, 0
    start = time.perf_counter()
    for place, text in enumerate(texts):
        piece = language.parse(text)[0][0]
        span = middle_span(len(piece.measures), place)
        # the rearranged piece, and room for the passage after the music around it, within the context
        if span is None or len(lm.piece_ids(loaded.tokenizer, text)) + 3 > loaded.context:
            skipped += 1
            continue
        bits_both, bits_alone, span_notes = infilling.span_bits(loaded.model, loaded.tokenizer, text, *span)
        both, alone, notes = both + bits_both, alone + bits_alone, notes + span_notes
        numbers = infilling.measure_numbers(piece)
        try:
            result = writing.infill(loaded, piece, numbers[span[0]], numbers[span[1] - 1], settings, seed=place)[0]
        except UserError as error:  # refused, as infer.py refuses it: a word of the score the model lacks
            print(f"chorale {place} refused: {error}", file=sys.stderr)
            refused += 1
            continue
        before, _, after = infilling.split_at_measures(piece.to_text(), *span)
        pieces, report = language.parse(result)
        valid += report.total == 0 and len(pieces) == 1 and len(pieces[0].measures) == len(piece.measures)
        kept += result.startswith(before) and result.endswith(after)
        written.append(result)
        originals.append(text)
    count = len(texts) - skipped
    print(f"model {args.model}, {args.split} split: {count} chorales with a 2- to 4-measure span in the middle "
          f"({skipped} too short or too long for the context), {time.perf_counter() - start:.0f} s")
    print(f"span bits per note: given the music before and after it {both / notes:.3f}, given the music before "
          f"it alone {alone / notes:.3f} (difference {alone / notes - both / notes:.3f}; {notes:.0f} notes)")
    print(f"written again: {count - refused} (refused {refused}: words the model lacks); valid without a repair "
          f"{valid}/{count - refused}, outside the span the chorale's own {kept}/{count - refused}")
    ours = evaluation.music_statistics(written)
    bach = evaluation.music_statistics(originals)
    print(f"{'whole pieces':32s} {'written again':>14s} {'Bach':>8s}")
    for name in SHOWN:
        print(f"{name:32s} {ours[name]:14.2f} {bach[name]:8.2f}")



if __name__ == "__main__":
    main()
