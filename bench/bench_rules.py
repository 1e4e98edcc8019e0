"""The voice-leading rules swept on one model: rules off / soft / mixed / hard x temperature 0.7 / 0.85 / 1.0,
each cell the music statistics of the same number of free samples beside Bach's chorales of one
split (validation by default: choose defaults there, report on test).

    python bench/bench_rules.py --model score-lm --dataset dataset --samples 100
Targets (issue 9, default settings): parallel fifths <= 0.6 and octaves <= 0.3 per 100 beats,
crossings <= 5, spacing errors <= 3.5, out of range <= 0.5%, >= 90% ending on the tonic with a
fermata in every voice; rules on no more than 10% further from Bach than rules off in
melodic intervals, chord qualities and rhythm.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _model import trained_model  # noqa: E402
from scorelm import dataset, decoding, evaluation, scorecard, writing  # noqa: E402

COLUMNS = [("fifths", "parallel_fifths_per_100_beats"), ("octaves", "parallel_octaves_per_100_beats"),
           ("crossings", "voice_crossings_per_100_beats"), ("spacing", "spacing_errors_per_100_beats"),
           ("clashes", "chromatic_clashes_per_100_beats"),
           ("range %", "notes_out_of_range_percent"), ("tonic %", "ending_on_tonic_percent"),
           ("+fermatas %", "ending_on_tonic_with_fermata_percent"), ("third %", "final_chord_third_percent"),
           ("signature %", "ending_on_signature_tonic_percent"),
           ("intervals", "interval_distance"),
           ("chords", "chord_quality_distance"), ("rhythm", "rhythm_distance")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="score-lm")
    parser.add_argument("--dataset", default="dataset")
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
    parser.add_argument("--samples", type=int, default=100, help="free samples per cell (default 100)")
    parser.add_argument("--modes", default=",".join(decoding.MODES))
    parser.add_argument("--temperatures", default="0.7,0.85,1.0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--particles", type=int, default=writing.FREE_PARTICLES,
                        help=f"particles per piece (default {writing.FREE_PARTICLES}, infer.py's for a free piece)")
    parser.add_argument("--json", type=Path, help="also write every cell's statistics here")
    args = parser.parse_args()
    loaded = trained_model(args.model)
    if not (Path(args.dataset) / f"{args.split}.jsonl").is_file():
        sys.exit(f"no dataset in {args.dataset}/: run 'python generate_data.py' first (or pass --dataset)")
    bach_texts = [r["text"] for r in dataset.read_jsonl(Path(args.dataset) / f"{args.split}.jsonl")]
    bach = evaluation.music_statistics(bach_texts)
    cells = {"Bach": {**bach, **evaluation.distribution_distances(bach, bach), "seconds": 0.0, "fallbacks": {}}}
    for mode in args.modes.split(","):
        for temperature in (float(t) for t in args.temperatures.split(",")):
            start = time.perf_counter()
            settings = loaded.settings(rules=mode, temperature=temperature, particles=args.particles)
            texts, report = scorecard.free_samples(loaded, settings, args.samples, None, args.seed, quiet=True)
            seconds = time.perf_counter() - start
            cells[f"{mode} t={temperature:g}"] = {**evaluation.music_statistics(texts, reference=bach),
                                                  "seconds": seconds, "fallbacks": report}
            print(f"  {mode} t={temperature:g}: {seconds:.0f} s, fallbacks {report}", file=sys.stderr, flush=True)
    print(f"model {args.model}, {args.samples} free samples per cell, {args.particles} particle(s) a piece, "
          f"Bach = {len(bach_texts)} {args.split} chorales")
    print(f"{'':14s}" + "".join(f"{name:>12s}" for name, _ in COLUMNS) + f"{'s/sample':>10s}")
    for name, cell in cells.items():
        print(f"{name:14s}" + "".join(f"{cell[key]:12.3f}" for _, key in COLUMNS)
              + f"{cell['seconds'] / max(args.samples, 1):10.2f}")
    if args.json:
        for cell in cells.values():
            cell.pop("_histograms", None)
        args.json.write_text(json.dumps(cells, indent=1) + "\n")


if __name__ == "__main__":
    main()
