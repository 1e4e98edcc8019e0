"""Run every benchmark, one after the other, and print what each measured.

    python bench/run_all.py [--model score-lm] [--dataset dataset]
Needs a dataset (python generate_data.py) and, for the sampling benchmark, a trained model.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="score-lm")
    parser.add_argument("--dataset", default="dataset")
    parser.add_argument("--samples", type=int, default=100, help="samples per mode in the sampling benchmark")
    args = parser.parse_args()
    benches = [
        ("data generation vs music21 parsing", ["bench_generate_data.py"]),
        ("tokens per chorale vs the chordified prototype", ["bench_tokens.py", "--dataset", args.dataset]),
        ("train.py vs a plain PyTorch loop, MFU", ["bench_train.py", "--dataset", args.dataset]),
        ("constrained vs unconstrained sampling", ["bench_sampling.py", "--model", args.model,
                                                    "--samples", str(args.samples)]),
        ("scaling with the number of pieces", ["bench_scaling.py"]),
        ("rendering (audio, page) vs sampling", ["bench_render.py", "--model", args.model]),
    ]
    failed = []
    for title, (script, *options) in benches:
        print(f"\n== {title}", flush=True)
        result = subprocess.run([sys.executable, str(ROOT / "bench" / script), *options], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        print(result.stdout.rstrip())
        if result.returncode:
            failed.append(script)
            print(f"failed: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode}")
    if failed:
        sys.exit(f"\n{len(failed)} benchmark(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
