"""The round trip through MusicXML files, per folder of music21's corpus: a stratified sample (a
few files from every composer or collection folder, every format), each encoded, written as
reconstruct.py writes MusicXML, read back and encoded again. Prints per folder how many pitched
notes (each chord note counted) survive unchanged and how many files come back exactly (the same
text, every note kept), then the totals, what was lost and what the encoder had to change.

    python bench/bench_roundtrip.py [--per-folder 3] [--folders beethoven,joplin] [--workers 2]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scorelm import cli, roundtrip  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-folder", type=int, default=roundtrip.FILES_PER_FOLDER, help="files per folder")
    parser.add_argument("--folders", help="comma-separated folder names (default: every folder but bach)")
    parser.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    args = parser.parse_args()
    sample = roundtrip.stratified_sample(args.per_folder)
    if args.folders:
        wanted = set(args.folders.split(","))
        sample = [path for path in sample if path.split("/")[0] in wanted]
    from tqdm import tqdm
    with ProcessPoolExecutor(cli.worker_count(args.workers)) as pool:
        results = list(tqdm(pool.map(roundtrip.file_round_trip, sample), total=len(sample), desc="round trip",
                            unit="file", file=sys.stderr))
    by_folder: dict[str, list] = {}
    for result in results:
        by_folder.setdefault(result.source.split("/")[0], []).append(result)
    print("kept: pitched notes unchanged (pitch, place, duration, tie, fermata, grace), each chord note counted;")
    print("exact: the same text after the file and every note kept; '+exc': not counting source ties the")
    print("language cannot hold (into another pitch, a rest, another voice or nothing)")
    print(f"{'folder':20s} {'files':>5s} {'exact':>5s} {'+exc':>5s} {'notes':>7s} {'kept %':>7s} {'+exc %':>7s}")
    for folder, group in [*by_folder.items(), ("all", results)]:
        notes = sum(r.notes for r in group)
        print(f"{folder:20s} {len(group):5d} {sum(r.exact for r in group):5d} "
              f"{sum(r.exact_but_for_exceptions for r in group):5d} {notes:7d} "
              f"{100 * sum(r.kept for r in group) / max(notes, 1):7.2f} "
              f"{100 * sum(r.kept_but_exceptions for r in group) / max(notes, 1):7.2f}")
    print(f"notes kept {100 * sum(r.kept for r in results) / max(sum(r.notes for r in results), 1):.2f}% "
          f"({100 * sum(r.kept_but_exceptions for r in results) / max(sum(r.notes for r in results), 1):.2f}% "
          f"but for ties the language cannot hold), files exact "
          f"{100 * sum(r.exact for r in results) / max(len(results), 1):.1f}% "
          f"({100 * sum(r.exact_but_for_exceptions for r in results) / max(len(results), 1):.1f}%)")
    lost, changed = Counter(), Counter()
    for result in results:
        lost.update(result.lost)
        changed.update(result.encoder_losses)
        if result.error:
            print(f"error: {result.source}: {result.error}")
        elif not result.exact_but_for_exceptions:
            print(f"not exact: {result.source}: {result.notes - result.kept} of {result.notes} notes lost "
                  f"({', '.join(f'{n} {what}' for what, n in result.lost.most_common(3))})")
    for what, count in lost.most_common():
        print(f"lost: {count:6d}  {what}")
    for what, count in changed.most_common():
        print(f"encoder: {count:6d}  {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
