"""Train a causal LM on ScoreLM text: fine-tune Pythia (or any causal LM), or train a
Pythia-shaped model from scratch, offline.

    accelerate launch train.py                                   # train_cfg.json's settings
    python train.py --config configs/cpu_quickstart.json         # offline, from scratch, on CPU
    accelerate launch train.py --lr 1e-4 --epochs 5              # any config key on the command line
    accelerate launch train.py --resume                          # continue the latest checkpoint
    accelerate launch --config_file accel_config.yaml train.py   # DeepSpeed ZeRO-2

Writes output_dir (default score-lm/): the model and tokenizer (transformers format,
safetensors), train_config.json, metrics.json, a model card README.md, loss_curve.png, and
checkpoints/ (Ctrl-C saves one before exiting).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from scorelm import config as configuration
from scorelm.cli import run
from scorelm.training import runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] + "\nconfig keys (each also an option, e.g. --lr 1e-4):\n"
        + configuration.help_text())
    parser.add_argument("--config", type=Path, default=Path("train_cfg.json"), help="config file (default: train_cfg.json)")
    parser.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                        help="continue the latest checkpoint in output_dir, or the one given")
    parser.add_argument("--overwrite", action="store_true", help="start over in an output_dir that holds a run")
    args, rest = parser.parse_known_args(argv)
    overrides = configuration.parse_overrides(rest)
    return runs.start(runs.RunRequest(args.config, args.resume, args.overwrite), overrides)


if __name__ == "__main__":
    run(main)
