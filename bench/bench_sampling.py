"""Constrained against unconstrained sampling on the same model, in one run: tokens per second
and how many samples are valid scores as written (reconstructed with zero repairs).

For the speed, every row of both modes runs exactly --max-new-tokens decoding steps (text
after a piece's || is discarded), so tokens/s compares the cost of a decoding step with and
without the grammar, not how long the pieces each mode happens to write are. The first
generate() call in a process pays PyTorch's one-off set-up for every sequence length it meets
(it runs at about half the speed of later calls): an untimed unconstrained warm-up of the same
length takes that out of both modes, and the two modes take turns going first. The
constraint's own start-up (its mask cache starts empty) is timed.

    python bench/bench_sampling.py --model score-lm --samples 100 [--particles 4]
Targets: constrained at least 0.9x the unconstrained tokens/s on CPU cores (infer.py's default
rules, batch 10 and 64), 0.85x on a GPU; 100% of constrained samples valid.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _model import trained_model  # noqa: E402
from scorelm import decoding, language, lm, writing  # noqa: E402


def run_batch(loaded: writing.LoadedModel, constrain: bool, batch: int, max_new_tokens: int, seed: int,
              rules: str = "off", particles: int = 1):
    settings = loaded.settings(constrain=constrain, stop_at_end=False, rules=rules, particles=particles)
    start = time.perf_counter()
    texts = decoding.generate_texts(loaded.model, loaded.tokenizer, "|", batch, settings, max_new_tokens=max_new_tokens,
                                    seed=seed, vocabulary=loaded.vocabulary)
    seconds = time.perf_counter() - start
    tokens = batch * max_new_tokens
    return texts, tokens, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="score-lm")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--rules", choices=decoding.MODES, default=writing.DEFAULT_RULES,
                        help=f"voice-leading rules in the constrained mode (default {writing.DEFAULT_RULES}, infer.py's)")
    parser.add_argument("--particles", type=int, default=writing.FREE_PARTICLES,
                        help=f"particles per piece in the constrained mode (default {writing.FREE_PARTICLES}, "
                             f"infer.py's for a free piece)")
    parser.add_argument("--device", choices=lm.DEVICES, default="cpu",
                        help="where the model runs (default cpu; auto: a GPU if there is one)")
    args = parser.parse_args()
    loaded = trained_model(args.model, args.device)
    totals = {mode: {"tokens": 0, "seconds": 0.0, "valid": 0, "closed": 0, "repairs": Counter()}
              for mode in ("constrained", "unconstrained")}
    run_batch(loaded, False, args.batch, args.max_new_tokens, seed=0)  # warm-up
    if args.particles > 1:  # particles decode args.particles times the rows: warm those shapes up too
        run_batch(loaded, False, args.batch * args.particles, args.max_new_tokens, seed=0)
    for index in range(args.samples // args.batch):
        order = list(totals) if index % 2 == 0 else list(totals)[::-1]
        for mode in order:  # alternate, so both see the same machine load
            texts, tokens, seconds = run_batch(loaded, mode == "constrained", args.batch, args.max_new_tokens, seed=index,
                                               rules=args.rules if mode == "constrained" else "off",
                                               particles=args.particles if mode == "constrained" else 1)
            total = totals[mode]
            total["tokens"] += tokens
            total["seconds"] += seconds
            for text in texts:
                pieces, report = language.parse(text)
                total["valid"] += report.total == 0 and len(pieces) == 1
                total["closed"] += text.endswith(language.END)
                total["repairs"].update(report.repairs)
    count = args.samples // args.batch * args.batch
    print(f"model {args.model} on {loaded.model.device}, {count} samples per mode, batch {args.batch}, max {args.max_new_tokens} new tokens, "
          f"rules {args.rules} and {args.particles} particle(s) a piece in the constrained mode")
    print(f"{'mode':14s} {'tokens/s':>9s} {'valid':>7s} {'closed':>7s} {'repairs/sample':>15s}")
    for mode, total in totals.items():
        print(f"{mode:14s} {total['tokens'] / total['seconds']:9.0f} {total['valid']:4d}/{count:<3d}"
              f"{total['closed']:4d}/{count:<3d} {sum(total['repairs'].values()) / count:15.1f}")
    rate = {m: t["tokens"] / t["seconds"] for m, t in totals.items()}
    # issue 32: at least 0.9 on CPU cores at batch 10 and 64 (default rules); on a GPU 0.85 at batch 64
    target = 0.85 if loaded.model.device.type != "cpu" else 0.9
    print(f"constrained / unconstrained tokens/s = {rate['constrained'] / rate['unconstrained']:.2f} (target >= {target})")
    print("unconstrained repairs: " + ", ".join(f"{what} {n}" for what, n in totals["unconstrained"]["repairs"].most_common(5)))


if __name__ == "__main__":
    main()
