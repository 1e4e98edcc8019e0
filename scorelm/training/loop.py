"""The training loop on accelerate: the accelerator (devices, processes, mixed precision,
DeepSpeed), the model and tokenizer to train, the loop itself with its schedule, checkpoints and
stop requests, and evaluation in bits per note."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from scorelm import infilling, lm
from scorelm.cli import UserError, worker_count
from scorelm.training.checkpoints import STATE_FILE, save_checkpoint

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


def prepare_model(cfg, train_texts: list[str], saved_tokenizer: Path | None, log):
    """The model and tokenizer to train. `saved_tokenizer`: when resuming, the run's own."""
    if cfg.from_scratch:
        if saved_tokenizer is not None:
            from transformers import AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(saved_tokenizer)
        else:
            tokenizer = lm.train_word_tokenizer(train_texts)
            if cfg.infill_share:
                infilling.add_sentinels(tokenizer)
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
    if cfg.infill_share and saved_tokenizer is None:
        infilling.add_sentinels(tokenizer)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return model, tokenizer


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
