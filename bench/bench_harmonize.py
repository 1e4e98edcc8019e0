"""Harmonizing many melodies, as the scorecard does: one at a time against side by side in
batches (writing.harmonize_each: melodies of similar length together), on the same model and
sopranos, in one run: wall time and the ratio, and whether every harmonization is a valid score
that keeps its melody.

    python bench/bench_harmonize.py --model score-lm --dataset dataset --melodies 41

Target (issue 32): the scorecard's harmonizations take at most half the time one at a time took.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _model import trained_model  # noqa: E402
from scorelm import dataset, language, melody, writing  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="score-lm")
    parser.add_argument("--dataset", default="dataset")
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
    parser.add_argument("--melodies", type=int, default=41, help="the split's first N sopranos (default 41)")
    parser.add_argument("--particles", type=int, default=writing.HARMONIZATION_PARTICLES)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    loaded = trained_model(args.model, args.device)
    path = Path(args.dataset) / f"{args.split}.jsonl"
    if not path.is_file():
        sys.exit(f"no dataset in {args.dataset}/: run 'python generate_data.py' first (or pass --dataset)")
    texts = [r["text"] for r in dataset.read_jsonl(path)][:args.melodies]
    pieces = [language.parse(text)[0][0] for text in texts]
    fits = [melody.fit(text, loaded.card, loaded.vocabulary) for text in texts]
    settings = loaded.settings(rules=writing.DEFAULT_RULES, particles=args.particles)
    writing.harmonize(loaded, pieces[0], settings, seed=999, fitted=fits[0])  # warm-up
    start = time.perf_counter()
    alone = [writing.harmonize(loaded, piece, settings, seed=index, fitted=fit)[0]
             for index, (piece, fit) in enumerate(zip(pieces, fits))]
    alone_seconds = time.perf_counter() - start
    start = time.perf_counter()
    together = writing.harmonize_each(loaded, pieces, fits, settings, seed=0)
    together_seconds = time.perf_counter() - start

    def kept(harmonized: list[str]) -> int:
        good = 0
        for text, piece in zip(harmonized, pieces):
            written, report = language.parse(text)
            good += report.total == 0 and len(written) == 1 and \
                written[0].voice_events(0) == piece.top_voice().voice_events(0)
        return good

    print(f"model {args.model} on {loaded.model.device}, {len(pieces)} {args.split} sopranos, "
          f"{args.particles} particle(s) each, rules {writing.DEFAULT_RULES}")
    print(f"one at a time  {alone_seconds:7.1f} s  valid and melody kept {kept(alone)}/{len(pieces)}")
    print(f"side by side   {together_seconds:7.1f} s  valid and melody kept {kept(together)}/{len(pieces)}")
    ratio = together_seconds / alone_seconds
    print(f"side by side / one at a time: {ratio:.2f} (target at most 0.5) {'met' if ratio <= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
