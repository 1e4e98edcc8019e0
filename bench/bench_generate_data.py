"""generate_data.py against music21 alone parsing the same files on the same cores.

Both run as fresh processes (interpreter start-up, music21 import, worker pool) over the same
files with the same number of workers, alternating, after one warm-up that fills music21's
parse cache for both. Prints the ratio of median wall times; the target is at most 1.25.

    python bench/bench_generate_data.py [--repeats 3] [--limit N]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PARSE_ONLY = """
import multiprocessing, sys
sys.path.insert(0, {root!r})
from music21 import corpus
from scorelm import dataset
from scorelm.cli import worker_count

def parse(source):
    corpus.parse(source)  # the same call generate_data makes for corpus files

if __name__ == "__main__":
    sources = dataset.bach_chorale_sources()[:{limit}]
    with multiprocessing.Pool(worker_count(None)) as pool:
        for _ in pool.imap_unordered(parse, sources, chunksize=4):
            pass
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=100_000, help="first N chorales only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        parse_only = [sys.executable, "-c", PARSE_ONLY.format(root=str(ROOT), limit=args.limit)]
        generate = [sys.executable, "generate_data.py", "--output", scratch, "--overwrite", "--limit", str(args.limit)]
        runs = {"music21 parse only": parse_only, "generate_data.py": generate,
                "generate_data.py --transpose": generate + ["--transpose"]}
        timed(parse_only)  # warm-up: fills music21's cache of parsed files
        times = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, command in runs.items():
                times[name].append(timed(command))
    base = statistics.median(times["music21 parse only"])
    print(f"{'run':32s} {'median s':>9s} {'ratio':>6s}")
    for name, values in times.items():
        print(f"{name:32s} {statistics.median(values):9.2f} {statistics.median(values) / base:6.2f}")
    ratio = statistics.median(times["generate_data.py"]) / base
    print(f"generate_data / parse = {ratio:.2f} (target <= 1.25)")
    augmented = statistics.median(times["generate_data.py --transpose"]) / statistics.median(times["generate_data.py"])
    print(f"--transpose adds {100 * (augmented - 1):.0f}% (target <= 25%)")


if __name__ == "__main__":
    main()
