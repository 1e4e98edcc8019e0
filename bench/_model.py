"""What the model benchmarks share: a trained model loaded, or one line saying how to get one."""
from __future__ import annotations

import sys
from pathlib import Path

from scorelm import writing


def trained_model(model_dir: str, device: str = "cpu") -> writing.LoadedModel:
    """A trained ScoreLM folder, loaded; exits with one line saying what to run first when there
    is none."""
    if not (Path(model_dir) / "config.json").is_file():
        sys.exit(f"no trained model in {model_dir}/: run 'bash quickstart.sh' (then --model quickstart/score-lm) "
                 f"or 'accelerate launch train.py' first")
    return writing.LoadedModel.load(model_dir, device)
