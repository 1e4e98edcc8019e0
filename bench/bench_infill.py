"""Infilling on a split's chorales (issue 31), with a model trained to infill: for each chorale a
span of 2 to 4 measures in its middle (2, 3, 4, 2, ... by the chorale's place in the split),
judged as the scorecard judges it (scorelm/passages.py):

1. How much the music after the span tells the model: the span's notes' bits given the music
   before and after it, against given the music before it alone (the same tokens scored both
   ways; infilling.span_bits).
2. The span written again (`infer.py --infill`'s defaults, one sample a chorale, seed = its
   place), all voices and then the inner voices alone (--voices alto,tenor): valid without a
   repair, every word outside the span the chorale's own, the voice leading of the span with a
   measure on either side (so that both joins count) beside Bach's same measures, and how much
   of the time each rewritten voice sounds Bach's note.

    python bench/bench_infill.py --model score-lm --dataset dataset --split test

Targets (issue 31): valid with zero repairs 100%, outside the span identical 100%; across the
joins parallel fifths at most 0.6 and octaves at most 0.3 per 100 beats, crossings at most 5,
spacing errors at most 3.5; the span's bits per note given both sides clearly below given the
music before it alone.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _model import trained_model  # noqa: E402
from scorelm import dataset, evaluation, infilling, passages, writing  # noqa: E402

SHOWN = ("parallel_fifths_per_100_beats", "parallel_octaves_per_100_beats", "voice_crossings_per_100_beats",
         "spacing_errors_per_100_beats", "chromatic_clashes_per_100_beats", "interval_distance",
         "chord_quality_distance", "rhythm_distance", "matches_bach_soprano_percent", "matches_bach_alto_percent",
         "matches_bach_tenor_percent", "matches_bach_bass_percent")


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
    reference = evaluation.corpus_pitch_classes([r["text"] for r in dataset.read_records(Path(args.dataset) / "train.jsonl")])
    start = time.perf_counter()
    every = passages.judge(loaded, texts, settings)
    inner = passages.judge(loaded, texts, settings, voices=(2, 3), bits=False)
    elapsed = time.perf_counter() - start
    ours, bach = every.columns(None, reference)
    inner_ours, _ = inner.columns((2, 3), reference)
    print(f"model {args.model}, {args.split} split: {every.chorales} of {len(texts)} chorales with a 2- to 4-measure "
          f"span in the middle (the others too short or too long for the context), {elapsed:.0f} s")
    print(f"span bits per note: given the music before and after it {ours['span_bits_both_sides']:.3f}, given the "
          f"music before it alone {ours['span_bits_before_alone']:.3f} (difference "
          f"{ours['span_bits_before_alone'] - ours['span_bits_both_sides']:.3f}; {every.notes} notes)")
    for name, judged in (("all voices", every), ("inner voices", inner)):
        attempted = judged.chorales - judged.refused
        print(f"written again, {name}: {attempted} (refused {judged.refused}: words the model lacks); valid without "
              f"a repair {judged.valid}/{attempted}, outside the span the chorale's own {judged.kept}/{attempted}")
    print(f"{'span and a measure either side':34s} {'all voices':>11s} {'inner':>8s} {'Bach':>8s}")
    for name in SHOWN:
        cells = [column.get(name) for column in (ours, inner_ours, bach)]
        print(f"{name:34s}" + "".join(f"{c:>{w}.2f}" if isinstance(c, (int, float)) else f"{'-':>{w}s}"
                                      for c, w in zip(cells, (12, 9, 9))))


if __name__ == "__main__":
    main()
