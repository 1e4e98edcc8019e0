"""The finished model folder: weights, tokenizer, config, metrics, a README (the model card for
people), the loss curve and scorelm.json (the card for ScoreLM), written to a staging folder and
moved into place whole."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from scorelm import config as configuration
from scorelm import files, language, model_folder
from scorelm.training.checkpoints import STAGING

def plot_losses(history: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(7, 4))
    if history["train"]:
        steps, losses = zip(*history["train"])
        axes.plot(steps, losses, label="train", linewidth=1)
    if history["validation"]:
        steps, metrics = zip(*history["validation"])
        axes.plot(steps, [m["loss"] for m in metrics], "o-", label="validation")
        if "training_weights" in metrics[-1]:
            axes.plot(steps, [m["training_weights"]["loss"] for m in metrics], "x--",
                      label="validation, training weights (without the moving average)")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss per token (nats)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    with files.replacing(path) as temporary:
        figure.savefig(temporary, dpi=120)
    plt.close(figure)


def model_card(cfg, metrics: dict, data_info: dict) -> str:
    rows = "\n".join(f"| {split} | {m['loss']:.4f} | {m['perplexity']:.2f} | {m['bits_per_note']:.3f} |"
                     for split, m in metrics.items() if isinstance(m, dict) and "loss" in m)
    config_json = json.dumps(dataclasses.asdict(cfg), indent=2)
    base = "a GPT-NeoX trained from scratch" if cfg.from_scratch else f"fine-tuned from `{cfg.model_name}`"
    return f"""---
library_name: transformers
tags: [music, score-lm, bach-chorales]
---
# ScoreLM model

A causal language model over ScoreLM's score text language (format version
{language.FORMAT_VERSION}), {base}. Sample from it with `python infer.py "|" --model {cfg.output_dir}`.

## Data
`{cfg.dataset}`: {data_info['train_pieces']} training pieces ({data_info['train_tokens']} tokens, packed into
{data_info['train_blocks']} blocks of at most {cfg.max_length} tokens), {data_info['validation_pieces']} validation and
{data_info['test_pieces']} test pieces.

## Results
Bits per note is the total negative log-likelihood in bits divided by the number of notes and
rests: it does not depend on the tokenizer, so it compares runs with different tokenizers.

| split | loss per token | perplexity | bits per note |
|---|---|---|---|
{rows}

Trained for {metrics['steps']} optimizer steps in {metrics['train_seconds']:.0f} s.

## Configuration
```json
{config_json}
```
"""


def save_outputs(cfg, accelerator, model, tokenizer, metrics: dict, history: dict, data_info: dict,
                 card: model_folder.ModelCard) -> None:
    output_dir = Path(cfg.output_dir)
    unwrapped = accelerator.unwrap_model(model)
    state_dict = accelerator.get_state_dict(model)
    unwrapped.generation_config.eos_token_id = tokenizer.eos_token_id
    unwrapped.generation_config.pad_token_id = tokenizer.pad_token_id
    unwrapped.generation_config.do_sample = True
    unwrapped.generation_config.max_new_tokens = cfg.max_length
    # the whole model is written to a staging folder and moved into place, scorelm.json (the
    # fingerprint of the files beside it) last: an interrupted save leaves the previous model
    # as it was, or a folder that loading refuses as mixed (model_folder.check_files)
    staging = output_dir / STAGING
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    unwrapped.save_pretrained(staging, is_main_process=accelerator.is_main_process,
                              save_function=accelerator.save, state_dict=state_dict)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tokenizer.save_pretrained(staging)
        configuration.save_config(cfg, staging / "train_config.json")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        (staging / "README.md").write_text(model_card(cfg, metrics, data_info))
        plot_losses(history, staging / "loss_curve.png")
        card.save(staging)  # after every other file: it fingerprints them
        new_weights = {p.name for p in model_folder.weight_files(staging)}
        *files, marker = sorted(staging.iterdir(), key=model_folder.move_order)  # marker: scorelm.json
        for path in files:
            os.replace(path, output_dir / path.name)
        for stale in model_folder.weight_files(output_dir):  # the old model's that the new one did not replace
            if stale.name not in new_weights:
                stale.unlink()
        os.replace(marker, output_dir / marker.name)
        staging.rmdir()
    accelerator.wait_for_everyone()
