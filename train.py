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
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

from scorelm import config as configuration
from scorelm import dataset, language, lm, model_folder
from scorelm.cli import UserError, check_writable_folder, run, worker_count

CHECKPOINTS = "checkpoints"
STAGING = ".staging-model"  # the finished model is written here, then moved into place
RUN_TOKENIZER = "tokenizer"  # under checkpoints/: the run's tokenizer, so that a resume tokenizes as it did
STATE_FILE = "trainer_state.json"


# ----------------------------------------------------------------------------- data

def load_splits(folder: Path) -> dict[str, list[dict]]:
    """The records of each split, loaded with `datasets` from generate_data.py's JSON lines."""
    import datasets
    files = {name: folder / f"{name}.jsonl" for name in dataset.SPLITS}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise UserError(f"dataset file {missing[0]} not found; run python generate_data.py first "
                        f"(or set the dataset key)")
    datasets.disable_progress_bars()
    for path in files.values():
        dataset.read_records(path)  # each record against the schema: one line naming file, line and field
    # an empty split (a dataset made with --split 95/5/0) is no data to `datasets`, and an error
    present = {name: str(path) for name, path in files.items() if path.read_text(errors="replace").strip()}
    try:
        loaded = datasets.load_dataset("json", data_files=present) if present else {}
    except Exception as error:  # a malformed file: say which folder, not a traceback
        raise UserError(f"cannot read the dataset in {folder}: {' '.join(str(error).split())[:200]}") from None
    splits = {name: loaded[name].to_list() if name in present else [] for name in dataset.SPLITS}
    if not splits["train"]:
        raise UserError(f"{files['train']} holds no pieces")
    return splits


def fill_voices(records: list[dict]) -> None:
    """Give records from datasets that predate the "voices" and "voice_ranges" fields both, parsed
    from the text (each record once)."""
    for record in records:
        if "voice_ranges" not in record or "voices" not in record:
            piece = language.parse(record["text"])[0][0]
            record.update(voices=piece.num_voices, voice_ranges=language.voice_ranges(piece))


def part_words(text: str) -> tuple[str, ...]:
    """The P words of a piece's first measure: its layout of parts and staves (none in a chorale)."""
    return tuple(word for word in text.split(" V1 ", 1)[0].split() if word.startswith("P:"))


def score_metadata(train_records: list[dict]) -> model_folder.ModelCard:
    """What sampling needs to know of the training data: the usual number of voices, each
    voice's pitch range (the constrained decoder keeps voices inside them), the usual layout of
    parts and staves for each number of voices, and how many pieces use each time signature and
    key signature (a melody in a meter or a key the model hardly knows is harmonized renotated or
    moved: melody.meter_for_the_model, melody.key_for_the_model)."""
    from collections import Counter
    fill_voices(train_records)
    ranges = dataset.corpus_voice_ranges(train_records)
    layouts: dict[int, Counter] = {}
    for record in train_records:
        layouts.setdefault(record["voices"], Counter())[part_words(record["text"])] += 1
    parts = {}
    for voices, counts in layouts.items():
        words = counts.most_common(1)[0][0]
        parts[voices] = [list(language.parse_token(w).staves) for w in words] or None
    return model_folder.ModelCard(
        format_version=language.FORMAT_VERSION, voices=Counter(r["voices"] for r in train_records).most_common(1)[0][0],
        voice_ranges={n: [list(r) for r in per_voice] for n, per_voice in ranges.items()}, parts=parts,
        time_signatures=header_counts(train_records, "T:"), key_signatures=header_counts(train_records, "K:"))


def header_counts(records: list[dict], prefix: str) -> dict[str, int]:
    """How many pieces use each header word of a kind ("T:3/4", "K:-2"), most used first."""
    from collections import Counter
    return dict(Counter(word for r in records for word in {w for w in r["text"].split() if w.startswith(prefix)})
                .most_common())


def forbidden_words_by_block(tokenizer, records: list[dict], blocks: list[list[int]], log,
                             show_progress: bool = True) -> list:
    """For unlikelihood_weight: where the decoder's hard rules forbid words in the training pieces
    (decoding.unlikelihood.forbidden_notes), as an array of (position, forbidden id) pairs per block. The
    blocks are lm.pack_texts' cut of the same pieces: consecutive blocks share one token, so block
    k starts at the sum of the earlier blocks' lengths less one each."""
    import bisect

    import numpy as np
    from tqdm import tqdm

    from scorelm.decoding import Vocabulary
    from scorelm.decoding.unlikelihood import forbidden_notes
    vocabulary = Vocabulary.from_tokenizer(tokenizer)
    starts, start = [], 0
    for block in blocks:
        starts.append(start)
        start += len(block) - 1
    pairs: list[list] = [[] for _ in blocks]
    offset, places, words = 0, 0, 0
    fill_voices(records)
    for record in tqdm(records, desc="rules over the training pieces", unit="piece", file=sys.stderr,
                       dynamic_ncols=True, disable=not show_progress or len(records) < 50):
        ids = lm.piece_ids(tokenizer, record["text"])
        if part_words(record["text"]):
            offset += len(ids)  # a keyboard's staves of voices: the rules are four-part writing's (as in decoding.settings)
            continue
        for position, forbidden in forbidden_notes(vocabulary, ids, record["voices"]):
            at = offset + position  # in the stream of all pieces; the block that predicts it:
            block = bisect.bisect_left(starts, at) - 1  # starts[block] < at <= starts[block + 1]
            pairs[block].append(np.stack([np.full(len(forbidden), at - starts[block]), forbidden], axis=1))
            places, words = places + 1, words + len(forbidden)
        offset += len(ids)
    log(f"unlikelihood: the rules forbid {words} words at {places} positions of the training pieces")
    return [np.concatenate(p) if p else np.zeros((0, 2), dtype=np.int64) for p in pairs]


# ----------------------------------------------------------------------------- model

def prepare_model(cfg, train_texts: list[str], saved_tokenizer: Path | None, log):
    """The model and tokenizer to train. `saved_tokenizer`: when resuming, the run's own."""
    if cfg.from_scratch:
        if saved_tokenizer is not None:
            from transformers import AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(saved_tokenizer)
        else:
            tokenizer = lm.train_word_tokenizer(train_texts)
            log(f"word-level tokenizer: {len(tokenizer)} tokens from the training split")
        model = lm.build_scratch_model(cfg.scratch_model, tokenizer, cfg.max_length, cfg.seed)
        return model, tokenizer
    log(f"loading {cfg.model_name}")
    model, tokenizer = lm.load_pretrained(cfg.model_name, cfg.trust_remote_code)
    lm.ensure_special_tokens(tokenizer)
    if saved_tokenizer is not None:
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(saved_tokenizer)
    elif cfg.add_score_tokens:
        sample = train_texts[:200]
        before = lm.tokens_per_piece(tokenizer, sample)
        added = lm.add_score_tokens(tokenizer, train_texts)
        after = lm.tokens_per_piece(tokenizer, sample)
        log(f"added {added} score symbols as tokens: {before:.0f} -> {after:.0f} tokens per piece")
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return model, tokenizer


# ----------------------------------------------------------------------------- checkpoints

def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a checkpoint is renamed into place only when whole)."""
    folder = output_dir / CHECKPOINTS
    found = [p for p in folder.glob("step-*") if (p / STATE_FILE).is_file()] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest_intact_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint that can be resumed; each newer, damaged one (a truncated file, a
    broken JSON) skipped with a warning."""
    for checkpoint in reversed(checkpoint_dirs(output_dir)):
        problem = model_folder.checkpoint_problem(checkpoint, STATE_FILE)
        if problem is None:
            return checkpoint
        print(f"warning: skipping the damaged checkpoint {checkpoint} ({problem})", file=sys.stderr)
    return None


def finished_run(output_dir: Path, checkpoint: Path) -> int | None:
    """The steps of the finished run whose last checkpoint this is (its model saved in
    output_dir), or None."""
    metrics = output_dir / "metrics.json"
    if not metrics.is_file():
        return None
    try:
        finished = json.loads(metrics.read_text())
        state = json.loads((checkpoint / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if finished.get("steps") == state.get("step") and finished.get("run") == state.get("run"):
        return state["step"]
    return None


def save_checkpoint(accelerator, output_dir: Path, state: dict, keep: int) -> Path:
    """accelerate's save_state into a temporary folder, then an atomic rename: a kill during
    the save leaves the previous checkpoint as the latest."""
    final = output_dir / CHECKPOINTS / f"step-{state['step']}"
    temporary = final.with_name(f".tmp-{final.name}")
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    # every process writes its own files (RNG states, ZeRO shards): all must finish before the
    # rename, or a late one loses its files or fails writing into a folder that has moved
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (temporary / STATE_FILE).write_text(json.dumps(state, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
        for old in checkpoint_dirs(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


# ----------------------------------------------------------------------------- the loop

class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM: finish the optimizer step, save a checkpoint, exit."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True

    def agreed(self, accelerator) -> bool:
        """All processes must stop at the same step, so they vote."""
        if accelerator.num_processes == 1:
            return self.requested
        import torch
        flag = torch.tensor([1.0 if self.requested else 0.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def evaluate(accelerator, model, loader, notes: int) -> dict:
    import torch
    model.eval()
    nll, tokens = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.long)
    with torch.no_grad(), accelerator.autocast():  # a prepared model autocasts itself; the average does not
        for batch in loader:
            block_nll, block_tokens = lm.token_nll(model, batch)
            block_nll, block_tokens = accelerator.gather_for_metrics((block_nll, block_tokens))
            nll += block_nll.double().sum().cpu()
            tokens += block_tokens.sum().cpu()
    model.train()
    return lm.metrics_from_totals(nll.item(), int(tokens.item()), notes)


def train(cfg, accelerator, model, tokenizer, data: dict, resume: Path | None, log) -> dict:
    """The training loop. Returns the history (train losses, validation metrics)."""
    import torch
    from accelerate.utils import tqdm as accelerate_tqdm
    from torch.utils.data import DataLoader
    from transformers import get_scheduler

    output_dir = Path(cfg.output_dir)
    pad = tokenizer.pad_token_id
    if cfg.unlikelihood_weight:  # each block beside where the rules forbid words in it
        train_loader = DataLoader(list(zip(data["train"], data["train_forbidden"])), batch_size=cfg.batchsize,
                                  shuffle=True, collate_fn=lambda b: lm.collate([block for block, _ in b], pad,
                                                                              [pairs for _, pairs in b]))
    else:
        train_loader = DataLoader(data["train"], batch_size=cfg.batchsize, shuffle=True,
                                  collate_fn=lambda b: lm.collate(b, pad))
    eval_loader = DataLoader(data["validation"], batch_size=cfg.batchsize, collate_fn=lambda b: lm.collate(b, pad))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]  # biases and layer norms
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    model, optimizer, train_loader, eval_loader = accelerator.prepare(model, optimizer, train_loader, eval_loader)

    steps_per_epoch = math.ceil(len(train_loader) / cfg.gradient_accumulation_steps)
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    # accelerate steps a prepared scheduler once per process per optimizer step
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer,
                              num_warmup_steps=cfg.warmup_steps * accelerator.num_processes,
                              num_training_steps=total_steps * accelerator.num_processes)
    scheduler = accelerator.prepare(scheduler)

    averaged = None
    if cfg.ema_decay:
        if accelerator.state.deepspeed_plugin is not None:
            raise UserError("ema_decay does not work with DeepSpeed (its weights are partitioned): set it to 0")
        from torch.optim.swa_utils import AveragedModel

        def moving_average(average, current, count):
            # the decay warms up, (1 + n) / (10 + n) until it reaches ema_decay, so the average
            # forgets the first (random) weights within tens of steps, not thousands
            decay = min(cfg.ema_decay, (1 + int(count)) / (10 + int(count)))
            return average * decay + current * (1 - decay)

        averaged = AveragedModel(accelerator.unwrap_model(model), avg_fn=moving_average)
        accelerator.register_for_checkpointing(averaged)  # saved and restored with every checkpoint

    def validate() -> dict:
        """Validation metrics of the weights that will be saved (the average, with ema_decay), and
        of the training weights beside them."""
        metrics = evaluate(accelerator, model, eval_loader, data["validation_notes"])
        if averaged is not None:
            metrics = {**evaluate(accelerator, averaged.module, eval_loader, data["validation_notes"]),
                       "training_weights": metrics}
        return metrics

    state = {"step": 0, "epoch": 0, "batches_done": 0, "history": {"train": [], "validation": []},
             "config": dataclasses.asdict(cfg), "run": uuid.uuid4().hex}  # run: which run a model folder's files are
    if resume is not None:
        accelerator.load_state(str(resume))
        state = json.loads((resume / STATE_FILE).read_text())
        log(f"resumed from {resume} at step {state['step']}")
    history = state["history"]

    stop = StopRequest()
    progress = accelerate_tqdm(total=total_steps, initial=state["step"], desc="training", unit="step",
                               file=sys.stderr, dynamic_ncols=True)
    tokens_seen, clock, running_loss, running_penalty, saved_step = 0, time.perf_counter(), [], [], state["step"]
    model.train()
    for epoch in range(state["epoch"], epochs if state["step"] < total_steps else 0):  # none left: a finished run
        loader = train_loader
        if epoch == state["epoch"] and state["batches_done"]:
            loader = accelerator.skip_first_batches(train_loader, state["batches_done"])
        loader.set_epoch(epoch)  # the seedable sampler: the same order for the same epoch
        batches_done = state["batches_done"] if epoch == state["epoch"] else 0
        for batch in loader:
            with accelerator.accumulate(model):
                forbidden = batch.pop("forbidden", None)
                outputs = model(**batch)
                loss = outputs.loss
                if forbidden is not None:  # the rules' unlikelihood term beside the cross-entropy
                    penalty = lm.forbidden_mass_penalty(outputs.logits, forbidden)
                    running_penalty.append(penalty.detach().float())
                    accelerator.backward(loss + cfg.unlikelihood_weight * penalty)
                else:
                    accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                if averaged is not None and accelerator.sync_gradients:
                    averaged.update_parameters(accelerator.unwrap_model(model))
            batches_done += 1
            tokens_seen += int(batch["attention_mask"].sum()) * accelerator.num_processes
            running_loss.append(loss.detach().float())
            if not accelerator.sync_gradients:
                continue
            state.update(step=state["step"] + 1, epoch=epoch, batches_done=batches_done)
            step = state["step"]
            train_loss = accelerator.reduce(torch.stack(running_loss).mean(), reduction="mean").item()
            running_loss = []
            rate = tokens_seen / (time.perf_counter() - clock)
            history["train"].append([step, train_loss])
            progress.update(1)
            logged = {"train/loss": train_loss, "train/lr": scheduler.get_last_lr()[0],
                      "train/tokens_per_second": rate}
            postfix = {"loss": f"{train_loss:.3f}", "lr": f"{scheduler.get_last_lr()[0]:.2e}", "tok_s": f"{rate:.0f}"}
            if running_penalty:  # the unlikelihood term, apart: the loss stays the cross-entropy
                penalty = accelerator.reduce(torch.stack(running_penalty).mean(), reduction="mean").item()
                running_penalty = []
                history.setdefault("unlikelihood", []).append([step, penalty])
                logged["train/unlikelihood"], postfix["unlikelihood"] = penalty, f"{penalty:.4f}"
            progress.set_postfix(**postfix)
            accelerator.log(logged, step=step)
            if cfg.eval_every and step % cfg.eval_every == 0 and step < total_steps:
                metrics = validate()
                history["validation"].append([step, metrics])
                accelerator.log(flat_metrics(metrics, "validation"), step=step)
                log(f"step {step}: validation loss {metrics['loss']:.4f}, bits/note {metrics['bits_per_note']:.3f}"
                    + (f" (training weights: {metrics['training_weights']['bits_per_note']:.3f})"
                       if averaged is not None else ""))
            stopping = stop.agreed(accelerator)
            if (cfg.save_every and step % cfg.save_every == 0) or stopping:
                path = save_checkpoint(accelerator, output_dir, state, cfg.keep_checkpoints)
                saved_step = step
                if stopping:
                    progress.close()
                    log(f"interrupted: saved {path}; continue with --resume")
                    raise SystemExit(130)
            if step >= total_steps:
                break
        else:  # the epoch ran to its end
            state.update(epoch=epoch + 1, batches_done=0)
        if saved_step != state["step"]:  # end of an epoch, or of training
            save_checkpoint(accelerator, output_dir, state, cfg.keep_checkpoints)
            saved_step = state["step"]
        if state["step"] >= total_steps:
            break
    progress.close()
    if not history["validation"] or history["validation"][-1][0] != state["step"]:
        history["validation"].append([state["step"], validate()])
    if averaged is not None:  # the average is what gets saved (the checkpoints hold both)
        with torch.no_grad():
            for target, source in zip(accelerator.unwrap_model(model).parameters(), averaged.module.parameters()):
                target.copy_(source)
    state["history"] = history
    return {"state": state, "model": model, "total_steps": total_steps}


def flat_metrics(metrics: dict, prefix: str) -> dict:
    """{"validation/loss": ..., "validation/training_weights/loss": ...} for the trackers."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(flat_metrics(value, f"{prefix}/{key}"))
        else:
            flat[f"{prefix}/{key}"] = value
    return flat


# ----------------------------------------------------------------------------- results

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
    figure.savefig(path, dpi=120)
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


# ----------------------------------------------------------------------------- main

def make_accelerator(cfg):
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, InitProcessGroupKwargs, ProjectConfiguration, set_seed
    import torch
    handlers = []
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    if deepspeed and not torch.cuda.is_available():
        handlers.append(InitProcessGroupKwargs(backend="gloo"))  # DeepSpeed on CPU: no NCCL
    if cfg.report_to == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise UserError("report_to tensorboard needs the tensorboard package: pip install tensorboard") from None
    accelerator = Accelerator(
        mixed_precision=None if cfg.mixed_precision == "auto" else cfg.mixed_precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=handlers,
        log_with=None if cfg.report_to == "none" else cfg.report_to,
        project_config=ProjectConfiguration(project_dir=cfg.output_dir, logging_dir=str(Path(cfg.output_dir) / "runs")),
    )
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:  # DeepSpeed takes these two from its own config: they must agree
        ds_config = plugin.deepspeed_config
        if accelerator.gradient_accumulation_steps != cfg.gradient_accumulation_steps:
            raise UserError(f"the accelerate config sets gradient_accumulation_steps "
                            f"{accelerator.gradient_accumulation_steps}, train config "
                            f"{cfg.gradient_accumulation_steps}: make them equal")
        clipping = ds_config.get("gradient_clipping", 0.0)
        if clipping not in ("auto", cfg.max_grad_norm):
            raise UserError(f"the accelerate config sets gradient_clipping {clipping}, train config max_grad_norm "
                            f"{cfg.max_grad_norm}: make them equal")
    if accelerator.device.type == "cpu":
        torch.set_num_threads(cpu_threads(cfg, accelerator))
    set_seed(cfg.seed)
    return accelerator


def cpu_threads(cfg, accelerator) -> int:
    """Threads per process on CPUs. `accelerate launch` sets OMP_NUM_THREADS=1 unless told --cpu
    or --num_cpu_threads_per_process (a GPU machine's default), which halves a 2-core CPU run;
    so the config decides: its cpu_threads, else this process's cores shared among the processes
    on this machine."""
    if cfg.cpu_threads:
        return cfg.cpu_threads
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    return max(1, worker_count(None) // max(1, local_processes))


def resolve_run(args, overrides: dict):
    """The config and the checkpoint to resume from (None for a fresh run)."""
    if args.resume is None:
        cfg = configuration.load_config(args.config, overrides)
        return cfg, None
    if args.resume == "latest":
        cfg = configuration.load_config(args.config, overrides)
        checkpoint = latest_intact_checkpoint(Path(cfg.output_dir))
        if checkpoint is None:
            raise UserError(f"no checkpoint to resume in {Path(cfg.output_dir) / CHECKPOINTS}")
    else:
        checkpoint = Path(args.resume)
        if not (checkpoint / STATE_FILE).is_file():
            raise UserError(f"{checkpoint} is not a complete checkpoint (no {STATE_FILE})")
        problem = model_folder.checkpoint_problem(checkpoint, STATE_FILE)
        if problem:
            raise UserError(f"cannot resume {checkpoint}: {problem}")
    saved = json.loads((checkpoint / STATE_FILE).read_text())["config"]
    cfg = dataclasses.replace(configuration.TrainConfig(**saved), **overrides)
    cfg.validate()
    return cfg, checkpoint


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
    if args.resume in (None, "latest"):
        cfg = configuration.load_config(args.config, overrides)
        if cfg.folds:
            with output_lock(Path(cfg.output_dir)):
                return train_folds(cfg, args)
    cfg, resume = resolve_run(args, overrides)
    output_dir = Path(cfg.output_dir)
    with output_lock(output_dir):
        if resume is not None and args.resume == "latest":
            steps = finished_run(output_dir, resume)
            if steps is not None:
                print(f"{output_dir} holds a finished run ({steps} steps): nothing to resume, nothing changed",
                      file=sys.stderr)
                return 0
        if resume is None and holds_a_run(output_dir):
            if not args.overwrite:
                raise UserError(f"{output_dir} holds an earlier run; --resume to continue it or --overwrite to "
                                f"start over")
            # the earlier run's checkpoints go; its model stays in place until this run's is whole
            shutil.rmtree(output_dir / CHECKPOINTS, ignore_errors=True)
            shutil.rmtree(output_dir / STAGING, ignore_errors=True)
        records = load_splits(Path(cfg.dataset))
        train_model(cfg, make_accelerator(cfg), records, resume)
    return 0


def output_lock(output_dir: Path):
    """The output folder's lock, taken by the first process of a run (model_folder.OutputLock),
    once the folder is known to be writable; the others run under it."""
    import contextlib
    check_writable_folder(output_dir)
    if int(os.environ.get("RANK", "0")) != 0:
        return contextlib.nullcontext()
    return model_folder.OutputLock(output_dir)


def holds_a_run(output_dir: Path) -> bool:
    """Whether the folder holds anything of an earlier run (this run's lock aside)."""
    return output_dir.exists() and any(p.name != model_folder.LOCK for p in output_dir.iterdir())


def train_model(cfg, accelerator, records: dict[str, list[dict]], resume: Path | None,
                alphabet: str | None = None) -> dict:
    """Train one model on records' train split, validate on its validation split, score its test
    split, and save it in cfg.output_dir. `alphabet`: words the tokenizer must hold besides the
    training pieces' (a cross-validation's whole corpus, as IDyOM's alphabet is). Returns the metrics."""
    output_dir = Path(cfg.output_dir)
    splits = {name: [r["text"] for r in records[name]] for name in dataset.SPLITS}

    def log(message: str) -> None:
        if accelerator.is_main_process:
            from tqdm import tqdm
            tqdm.write(message, file=sys.stderr)  # above the progress bar, not inside it

    vocabulary_texts = splits["train"] + ([alphabet] if alphabet else [])
    run_tokenizer = output_dir / CHECKPOINTS / RUN_TOKENIZER
    saved = (run_tokenizer if (run_tokenizer / "tokenizer_config.json").is_file() else output_dir) if resume else None
    model, tokenizer = prepare_model(cfg, vocabulary_texts, saved, log)
    if accelerator.is_main_process:
        # beside the checkpoints, not in the model's place: until the run ends, the folder's model
        # (an earlier run's, with --overwrite) stays whole
        run_tokenizer.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(run_tokenizer)
    data, data_info = {}, {}
    for name in dataset.SPLITS:
        blocks, tokens, forced = lm.pack_texts(tokenizer, splits[name], cfg.max_length)
        data[name], data[f"{name}_notes"] = blocks, lm.count_notes(splits[name])
        data_info.update({f"{name}_pieces": len(splits[name]), f"{name}_tokens": tokens, f"{name}_blocks": len(blocks)})
        if forced:
            log(f"warning: {forced} {name} blocks cut inside a measure (measure longer than max_length)")
    if cfg.unlikelihood_weight:
        data["train_forbidden"] = forbidden_words_by_block(tokenizer, records["train"], data["train"], log,
                                                           accelerator.is_main_process)
    if not data["validation"]:
        raise UserError(f"{cfg.dataset}/validation.jsonl holds no pieces; generate the dataset with a validation split")
    filled = data_info["train_tokens"] / (len(data["train"]) * cfg.max_length)
    log(f"{data_info['train_pieces']} training pieces, {data_info['train_tokens']} tokens in "
        f"{data_info['train_blocks']} blocks ({filled:.0%} of block capacity used)")
    if cfg.report_to != "none":
        accelerator.init_trackers("score-lm", config={k: v for k, v in dataclasses.asdict(cfg).items()
                                                     if isinstance(v, (int, float, str, bool))})

    start = time.perf_counter()
    result = train(cfg, accelerator, model, tokenizer, data, resume, log)
    model, state = result["model"], result["state"]
    import torch
    from torch.utils.data import DataLoader
    test_loader = accelerator.prepare(DataLoader(data["test"], batch_size=cfg.batchsize,
                                                 collate_fn=lambda b: lm.collate(b, tokenizer.pad_token_id)))
    metrics = {"validation": state["history"]["validation"][-1][1],
               "test": evaluate(accelerator, model, test_loader, data["test_notes"]) if data["test"] else {},
               "steps": state["step"], "run": state.get("run"), "train_seconds": time.perf_counter() - start,
               "format_version": language.FORMAT_VERSION, "world_size": accelerator.num_processes,
               "cpu_threads": torch.get_num_threads() if accelerator.device.type == "cpu" else None,
               "mixed_precision": accelerator.mixed_precision, "distributed_type": str(accelerator.distributed_type),
               "torch": torch.__version__}
    save_outputs(cfg, accelerator, model, tokenizer, metrics, state["history"], data_info,
                 score_metadata(records["train"]))
    accelerator.end_training()
    for split in ("validation", "test"):
        if metrics[split]:
            log(f"{split}: loss {metrics[split]['loss']:.4f}, perplexity {metrics[split]['perplexity']:.2f}, "
                f"bits per note {metrics[split]['bits_per_note']:.3f}")
    log(f"saved the model to {output_dir}/")
    return metrics




def train_folds(cfg, args) -> int:
    """Cross-validation (cfg.folds models): every piece of the dataset's three splits (their
    originals; a dataset made with --transpose has each fold's training pieces transposed the
    same way), dealt into folds by piece; model k trains on the others, is validated on fold k
    (nothing is chosen on it: the recipe fixes the steps) and saved as output_dir/fold-k."""
    from accelerate.utils import set_seed

    from scorelm.analysis import folds
    if args.resume not in (None, "latest"):
        raise UserError("--resume with folds continues each fold's latest checkpoint: give it no path")
    output_dir = Path(cfg.output_dir)
    records = load_splits(Path(cfg.dataset))
    originals = [r for name in dataset.SPLITS for r in records[name] if r.get("transposition", "P1") == "P1"]
    transposed = any(r.get("transposition", "P1") != "P1" for r in records["train"])
    dealt = folds.assign_folds(originals, cfg.folds, cfg.seed)
    manifest = folds.FoldManifest(cfg.folds, cfg.seed, cfg.dataset, len(originals), [
        folds.FoldModel(folds.fold_name(i), [r["id"] for r in fold], [folds.text_key(r["text"]) for r in fold])
        for i, fold in enumerate(dealt)])
    if args.resume:
        if not (output_dir / folds.MANIFEST).is_file():
            raise UserError(f"no cross-validation to resume in {output_dir} (no {folds.MANIFEST})")
        if folds.FoldManifest.read(output_dir, complete=False).models != manifest.models:
            raise UserError(f"{output_dir}/{folds.MANIFEST} dealt other pieces (another dataset, seed or fold count)")
    elif holds_a_run(output_dir):
        if not args.overwrite:
            raise UserError(f"{output_dir} holds an earlier run; --resume to continue it or --overwrite to start over")
        for old in [output_dir / folds.MANIFEST, *output_dir.glob("fold-*")]:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest.write(output_dir)
    alphabet = " ".join(sorted({word for r in originals for word in r["text"].split()}))
    accelerator = make_accelerator(cfg)
    results = []
    for index, held_out in enumerate(dealt):
        fold_dir = output_dir / folds.fold_name(index)
        if (fold_dir / "metrics.json").is_file():
            results.append(json.loads((fold_dir / "metrics.json").read_text()))
            print(f"{fold_dir.name}: trained already", file=sys.stderr)
            continue
        training = [r for other, fold in enumerate(dealt) if other != index for r in fold]
        if transposed:
            training = training + dataset.transposed_copies(training)
        latest = latest_intact_checkpoint(fold_dir) if args.resume else None
        fold_cfg = dataclasses.replace(cfg, output_dir=str(fold_dir), folds=0)
        print(f"{fold_dir.name} of {cfg.folds}: {len(training)} training pieces, {len(held_out)} held out",
              file=sys.stderr)
        set_seed(cfg.seed)
        results.append(train_model(fold_cfg, accelerator, {"train": training, "validation": held_out, "test": []},
                                   latest, alphabet))
        accelerator.free_memory()
    bits = [r["validation"]["bits_per_note"] for r in results]
    mean = sum(bits) / len(bits)
    spread = (sum((b - mean) ** 2 for b in bits) / (len(bits) - 1)) ** 0.5
    summary = {"held_out_bits_per_note": bits, "mean": mean, "sd": spread}
    (output_dir / "cross_validation.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{cfg.folds}-fold cross-validation: held-out bits per note {mean:.3f} (sd {spread:.3f} over folds); "
          f"models in {output_dir}/fold-*, {folds.MANIFEST} names what each held out", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run(main)
