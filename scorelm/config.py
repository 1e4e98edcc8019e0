"""Training configuration: one typed dataclass, loaded from JSON, overridable per key on the
command line, validated (unknown keys and wrong types are one-line errors), saved with the model."""
from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from scorelm.cli import UserError

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
PRECISIONS = ("auto", "no", "fp16", "bf16")
TRACKERS = ("none", "tensorboard")


def option(default, help: str):
    """A config field with its documentation (shown by train.py --help and in README)."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every key of train_cfg.json."""
    model_name: str = option("EleutherAI/pythia-70m-deduped", "Hub id or local directory of the causal LM to fine-tune")
    from_scratch: bool = option(False, "train a new GPT-NeoX (Pythia's architecture) of scratch_model's shape, "
                                       "with a word-level tokenizer trained on the dataset; model_name is not used")
    scratch_model: dict = option({"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
                                  "intermediate_size": 1024},
                                 "GPTNeoXConfig keys for from_scratch, merged over this default shape; the "
                                 "rest as Pythia (rotary on a quarter of each head, parallel residual)")
    add_score_tokens: bool = option(True, "fine-tuning: add the score symbols that the tokenizer splits into "
                                          "several pieces as tokens, and resize the embeddings")
    dataset: str = option("dataset", "folder with generate_data.py's train/validation/test.jsonl")
    output_dir: str = option("score-lm", "where the model, tokenizer, metrics and checkpoints/ go")
    max_length: int = option(1024, "tokens per training block (pieces packed, split at measure starts)")
    batchsize: int = option(8, "blocks per batch on each process")
    gradient_accumulation_steps: int = option(1, "batches per optimizer step")
    lr: float = option(3e-4, "peak learning rate (AdamW)")
    lr_scheduler: str = option("cosine", "transformers scheduler: " + ", ".join(SCHEDULERS))
    warmup_steps: int = option(100, "optimizer steps of linear warm-up")
    weight_decay: float = option(0.01, "AdamW weight decay (not on biases and layer norms)")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0: no clipping)")
    epochs: int = option(3, "passes over the training split")
    max_steps: int = option(0, "stop after this many optimizer steps (0: after all epochs)")
    ema_decay: float = option(0.0, "keep an exponential moving average of the weights, its decay per optimizer "
                                   "step warming up to this (e.g. 0.999); validation reports both, the average "
                                   "is saved (0: off; not with DeepSpeed)")
    unlikelihood_weight: float = option(0.0, "add this times -log(1 - P) of the words the default "
                                             "decoder's hard rules forbid (parallel fifths and octaves, the final "
                                             "chord) where Bach's own word keeps them, to the loss (0: off)")
    infill_share: float = option(0.0, "share of the training pieces shown with the music after a span of 1 to 8 "
                                      "whole measures moved to their front after sentinel words (fill in the "
                                      "middle), so that the model learns to rewrite a passage knowing what follows "
                                      "it (0: off)")
    eval_every: int = option(200, "optimizer steps between validation runs (0: only at the end)")
    save_every: int = option(500, "optimizer steps between checkpoints (0: only at epoch ends)")
    keep_checkpoints: int = option(2, "checkpoints kept; older ones are deleted")
    seed: int = option(42, "seed of initialisation and data order")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass: less memory, "
                                                 "about 30% more compute")
    mixed_precision: str = option("auto", "auto (as accelerate launch / accel_config.yaml say), no, fp16 or bf16")
    cpu_threads: int = option(0, "training on CPUs: threads per process (0: the cores this process may use, shared "
                                 "among the machine's processes; plain accelerate launch would give each one thread)")
    folds: int = option(0, "cross-validation: train this many models, each without one fold of every piece in the "
                           "dataset (all three splits), into output_dir/fold-01 ... with folds.json saying which "
                           "pieces each held out (0: one model on the train split)")
    report_to: str = option("none", "none or tensorboard (logs in output_dir/runs)")
    trust_remote_code: bool = option(False, "let a Hub model run its own code (only for models you trust)")

    def validate(self) -> None:
        for name, allowed in (("lr_scheduler", SCHEDULERS), ("mixed_precision", PRECISIONS),
                              ("report_to", TRACKERS)):
            if getattr(self, name) not in allowed:
                raise UserError(f"config key {name}: {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        positive = ("max_length", "batchsize", "gradient_accumulation_steps", "epochs", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"config key {name} must be at least 1, not {getattr(self, name)}")
        for name in ("max_steps", "eval_every", "save_every", "warmup_steps", "weight_decay", "max_grad_norm",
                     "cpu_threads", "unlikelihood_weight", "folds"):
            if getattr(self, name) < 0:
                raise UserError(f"config key {name} must not be negative")
        if not 0 <= self.infill_share <= 1:
            raise UserError(f"config key infill_share must be in [0, 1], not {self.infill_share}")
        if self.infill_share and self.unlikelihood_weight:
            raise UserError("config keys infill_share and unlikelihood_weight cannot be used together yet "
                            "(the unlikelihood targets are placed in the pieces as written)")
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"config key ema_decay must be in [0, 1), not {self.ema_decay}")
        if self.folds == 1:
            raise UserError("config key folds must be 0 (no cross-validation) or at least 2, not 1")
        if not self.lr > 0:
            raise UserError("config key lr must be positive")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_TYPES = typing.get_type_hints(TrainConfig)


def _closest(name: str) -> str:
    match = difflib.get_close_matches(name, FIELDS, n=1)
    return f" (did you mean {match[0]}?)" if match else ""


def _typed(name: str, value):
    """Check a JSON value against the field's type (ints are accepted for floats)."""
    expected = _TYPES[name]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):
        raise UserError(f"config key {name}: expected {expected.__name__}, got {json.dumps(value)}")
    return value


def _parse_cli_value(name: str, text: str):
    expected = _TYPES[name]
    if expected is str:
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"--{name}: {text!r} is not a valid {expected.__name__}") from None
    return _typed(name, value)


def parse_overrides(arguments: list[str]) -> dict:
    """`--key value` and `--key=value` pairs for config keys, typed."""
    overrides, index = {}, 0
    while index < len(arguments):
        argument = arguments[index]
        if not argument.startswith("--"):
            raise UserError(f"unexpected argument {argument!r}; config keys are given as --key value")
        name, _, value = argument[2:].partition("=")
        if name not in FIELDS:
            raise UserError(f"unknown option --{name}{_closest(name)}")
        if not _:
            index += 1
            if index >= len(arguments):
                raise UserError(f"--{name} needs a value")
            value = arguments[index]
        overrides[name] = _parse_cli_value(name, value)
        index += 1
    return overrides


def load_config(path: Path | None, overrides: dict | None = None) -> TrainConfig:
    values = {}
    if path is not None:
        if not Path(path).is_file():
            raise UserError(f"no such config file: {path}")
        try:
            values = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise UserError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise UserError(f"{path} must hold a JSON object of config keys")
    values = {k: v for k, v in values.items() if not k.startswith("_")}  # "_comment" keys are notes
    for name in values:
        if name not in FIELDS:
            raise UserError(f"unknown config key {name!r} in {path}{_closest(name)}")
    config = TrainConfig(**{name: _typed(name, value) for name, value in values.items()})
    config = dataclasses.replace(config, **(overrides or {}))
    config.validate()
    return config


def save_config(config: TrainConfig, path: Path) -> None:
    from scorelm import files
    files.write_text(path, json.dumps(dataclasses.asdict(config), indent=2) + "\n")


def help_text() -> str:
    """One line per key: name, default, documentation."""
    defaults = dataclasses.asdict(TrainConfig())
    return "\n".join(f"  --{name} {json.dumps(defaults[name])}: {f.metadata['help']}" for name, f in FIELDS.items())
