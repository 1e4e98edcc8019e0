"""How data generation and training time grow with the number of pieces: 1x, 2x and 4x of a
subset of the chorales, measured in one run. Linear growth prints ratios near 2 and 4.

    python bench/bench_scaling.py [--base 50]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = {"from_scratch": True, "max_length": 256, "batchsize": 8, "epochs": 1, "eval_every": 0, "save_every": 0,
         "warmup_steps": 5, "scratch_model": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                                              "intermediate_size": 256}}


def run(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=int, default=50, help="pieces at 1x (default 50; 4x must be <= 412)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for factor in (1, 2, 4):
            pieces = args.base * factor
            data = Path(scratch) / f"data{factor}"
            generate = run([sys.executable, "generate_data.py", "--limit", str(pieces), "--output", str(data),
                            "--split", "80/10/10"])
            config = Path(scratch) / f"cfg{factor}.json"
            config.write_text(json.dumps({**TRAIN, "dataset": str(data), "output_dir": str(Path(scratch) / f"m{factor}")}))
            run([sys.executable, "train.py", "--config", str(config)])
            train = json.loads((Path(scratch) / f"m{factor}" / "metrics.json").read_text())["train_seconds"]
            rows.append((factor, pieces, generate, train))
    print(f"{'size':>5s} {'pieces':>7s} {'generate s':>11s} {'ratio':>6s} {'train s':>8s} {'ratio':>6s}")
    for factor, pieces, generate, train in rows:
        print(f"{factor:4d}x {pieces:7d} {generate:11.2f} {generate / rows[0][2]:6.2f} {train:8.2f} {train / rows[0][3]:6.2f}")


if __name__ == "__main__":
    main()
