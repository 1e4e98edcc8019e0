"""A training run: one model trained on a dataset's splits and saved, or K models of a
cross-validation, each without one fold; started, resumed or refused as train.py's command line
asks."""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

from scorelm import config as configuration
from scorelm import dataset, infilling, language, lm, model_folder
from scorelm.cli import UserError
from scorelm.training.checkpoints import (CHECKPOINTS, RUN_TOKENIZER, STAGING, STATE_FILE, finished_run, holds_a_run,
                                          latest_intact_checkpoint, output_lock)
from scorelm.training.data import forbidden_words_by_block, load_splits, score_metadata
from scorelm.training.loop import evaluate, make_accelerator, prepare_model, train
from scorelm.training.outputs import save_outputs


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """What train.py's command line asks for, beside the config keys it overrides."""
    config: Path  # the config file
    resume: str | None = None  # None: a new run; "latest": the output folder's latest checkpoint; or a checkpoint
    overwrite: bool = False  # start over in an output folder that holds a run


def resolve_run(args: RunRequest, overrides: dict):
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
    bar, end, eos = lm.bar_token_id(tokenizer), lm.word_id(tokenizer, language.END), tokenizer.eos_token_id
    for name in dataset.SPLITS:
        pieces = [lm.piece_ids(tokenizer, text) for text in splits[name]]
        tokens = sum(map(len, pieces))
        moved = set()
        if name == "train" and cfg.infill_share:
            pieces, moved = infilling.training_pieces(pieces, cfg.infill_share, cfg.seed, bar, end,
                                                      infilling.sentinel_ids(tokenizer))
            log(f"infilling: {len(moved)} of {len(pieces)} training pieces shown with the music after a span of "
                f"measures first")
        blocks, forced = lm.pack_blocks(pieces, {eos, bar}, cfg.max_length, whole=moved)
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


def train_folds(cfg, args: RunRequest) -> int:
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


def start(args: RunRequest, overrides: dict) -> int:
    """train.py: a new run from the config (with `overrides`, config keys), refused in a folder
    that holds an earlier run unless asked to overwrite it; or a resumed one; a cross-validation
    where the config asks for folds."""
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
