"""Rendering beside sampling: the time to write N samples as MusicXML, MIDI, PNG, MP3 and one
page (infer.py --render), beside the time to sample them (infer.py's default settings), in one run.

    python bench/bench_render.py --model score-lm --samples 50
Target (issue 11): rendering takes no longer than sampling did (ratio at most 1.0). Sampling is
warmed up first (the first generate() in a process runs at half speed).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _model import trained_model  # noqa: E402
from scorelm import audio, language, render, scorecard, writing  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="score-lm")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    loaded = trained_model(args.model)
    settings = loaded.settings(rules=writing.DEFAULT_RULES, particles=writing.FREE_PARTICLES)
    scorecard.free_samples(loaded, settings, 2, 64, args.seed + 999, quiet=True)  # warm-up
    start = time.perf_counter()
    texts, _ = scorecard.free_samples(loaded, settings, args.samples, None, args.seed, quiet=True)
    sampling_seconds = time.perf_counter() - start
    pieces = [language.parse(text)[0][0] for text in texts]
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        written = render.render_pieces(pieces, Path(folder) / "sample", render.DEFAULT_FORMATS, title="ScoreLM sample")
        render_seconds = time.perf_counter() - start
        page_bytes = render.page_path(Path(folder) / "sample").stat().st_size
    music_seconds = sum(audio.performance(piece)[1] for piece in pieces)
    print(f"model {args.model}, {args.samples} samples ({music_seconds / 60:.1f} minutes of music), "
          f"synthesiser {audio.synthesiser()}")
    print(f"sampling   {sampling_seconds:7.1f} s  {sampling_seconds / args.samples:6.2f} s per piece")
    print(f"rendering  {render_seconds:7.1f} s  {render_seconds / args.samples:6.2f} s per piece "
          f"({len(written)} files, page {page_bytes / 1e6:.1f} MB)")
    ratio = render_seconds / sampling_seconds
    print(f"rendering / sampling: {ratio:.2f} (target at most 1.0) {'met' if ratio <= 1.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
