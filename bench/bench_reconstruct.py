"""reconstruct.py on long texts: the time per 1,000 measures at 2,000 and 20,000 measures (a
chorale's measures repeated), each the whole command as a user runs it, measured in one run.

    python bench/bench_reconstruct.py [--measures 2000 20000]

Target (issue 30): linear in the piece's length, 20,000 measures within a minute on 2 cores. "peak MB"
is the largest process's (a long piece is written in spans, one process a core).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scorelm import language  # noqa: E402


def long_text(measures: int) -> str:
    """bwv66.6's measures after its first, repeated until the text has `measures` measures."""
    from music21 import corpus
    words = language.encode_score(corpus.parse("bach/bwv66.6.mxl")).split()
    bars = [index for index, word in enumerate(words) if word == language.BAR]
    head, body = words[:bars[1]], words[bars[1]:words.index(language.END)]
    per_body = body.count(language.BAR)
    return " ".join(head + body * ((measures - 1) // per_body + 1)) + " " + language.END


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measures", type=int, nargs="+", default=[2000, 20000])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for measures in args.measures:
            text = long_text(measures)
            path = Path(folder) / f"long{measures}.txt"
            path.write_text(text)
            written = text.split().count(language.BAR)
            start = time.perf_counter()
            result = subprocess.run([sys.executable, str(ROOT / "reconstruct.py"), str(path)], capture_output=True,
                                    text=True)
            seconds = time.perf_counter() - start
            if result.returncode:
                sys.exit(f"reconstruct.py failed on {written} measures: {result.stderr.strip()[-300:]}")
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            rows.append((written, seconds, peak))
    print(f"{'measures':>9s} {'seconds':>8s} {'s per 1,000':>12s} {'peak MB (so far)':>17s}")
    for measures, seconds, peak in rows:
        print(f"{measures:9d} {seconds:8.1f} {1000 * seconds / measures:12.2f} {peak:17.0f}")
    if len(rows) > 1:
        (small, small_s, _), (large, large_s, _) = rows[0], rows[-1]
        print(f"time per measure, {large} against {small}: {(large_s / large) / (small_s / small):.2f} (linear: 1.0); "
              f"{large} measures {'within' if large_s <= 60 else 'NOT within'} a minute")


if __name__ == "__main__":
    main()
