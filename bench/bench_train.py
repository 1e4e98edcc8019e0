"""train.py's training loop against a minimal plain PyTorch loop: same model, batches, optimizer,
scheduler and data, measured side by side in one run, in fp32 and bf16. Also model FLOPs
utilisation (MFU) against a same-dtype matmul measured in the same run.

Each loop runs twice (a short and a long run); the rate is taken from the difference, so
start-up costs (accelerate's prepare, the checkpoint written at the end) cancel out.

    python bench/bench_train.py                          # the quick-start model shape
    python bench/bench_train.py --hidden 512 --layers 6  # Pythia-70m's shape
Target: train.py at least 0.95 of the plain loop's tokens/s.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from scorelm import config as configuration  # noqa: E402
from scorelm import dataset, lm  # noqa: E402
from scorelm.training import loop as training_loop  # noqa: E402


def make_data(cfg):
    texts = [r["text"] for r in dataset.read_jsonl(Path(cfg.dataset) / "train.jsonl")]
    tokenizer = lm.train_word_tokenizer(texts)
    blocks, _, _ = lm.pack_texts(tokenizer, texts, cfg.max_length)
    return tokenizer, blocks


def plain_loop(cfg, tokenizer, blocks, steps: int, precision: str) -> float:
    """The least a training step can do: forward, backward, clip, AdamW, scheduler."""
    from torch.utils.data import DataLoader
    from transformers import get_scheduler
    model = lm.build_scratch_model(cfg.scratch_model, tokenizer, cfg.max_length, cfg.seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=steps)
    loader = DataLoader(blocks, batch_size=cfg.batchsize, shuffle=True,
                        collate_fn=lambda b: lm.collate(b, tokenizer.pad_token_id))
    start, done = time.perf_counter(), 0
    while done < steps:
        for batch in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - start


def train_py_loop(cfg, tokenizer, blocks, steps: int, precision: str) -> float:
    """train.py's own train() with checkpoints and evaluation reduced to the minimum."""
    import dataclasses

    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(reset_partial_state=True)  # a new Accelerator per run, in one process
    GradientState._reset_state()
    with tempfile.TemporaryDirectory() as output_dir:
        run_cfg = dataclasses.replace(cfg, max_steps=steps, eval_every=0, save_every=0, output_dir=output_dir,
                                      mixed_precision=precision)
        accelerator = training_loop.make_accelerator(run_cfg)
        model = lm.build_scratch_model(cfg.scratch_model, tokenizer, cfg.max_length, cfg.seed)
        data = {"train": blocks, "validation": blocks[:1], "validation_notes": 1}
        start = time.perf_counter()
        training_loop.train(run_cfg, accelerator, model, tokenizer, data, None, lambda message: None)
        return time.perf_counter() - start


def matmul_flops(precision: str, size: int = 1024, repeats: int = 20) -> float:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def flops_per_token(model, cfg) -> float:
    """6 N (forward and backward through the weights) + attention's 12 L d T (PaLM's appendix B)."""
    config = model.config
    non_embedding = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)
    return 6 * non_embedding + 12 * config.num_hidden_layers * config.hidden_size * cfg.max_length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cpu_quickstart.json")
    parser.add_argument("--dataset", default="dataset", help="generate_data.py output to read (default: dataset)")
    parser.add_argument("--hidden", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--steps", type=int, nargs=2, default=[5, 25], metavar=("SHORT", "LONG"))
    args = parser.parse_args()
    if not (Path(args.dataset) / "train.jsonl").is_file():
        sys.exit(f"no dataset in {args.dataset}/: run 'python generate_data.py' first (or pass --dataset)")
    cfg = configuration.load_config(args.config, {"dataset": args.dataset})
    if args.hidden:
        cfg.scratch_model = {**cfg.scratch_model, "hidden_size": args.hidden, "intermediate_size": 4 * args.hidden}
    if args.layers:
        cfg.scratch_model = {**cfg.scratch_model, "num_hidden_layers": args.layers}
    tokenizer, blocks = make_data(cfg)
    tokens_per_step = cfg.batchsize * cfg.max_length  # blocks are ~full (packed)
    model = lm.build_scratch_model(cfg.scratch_model, tokenizer, cfg.max_length, cfg.seed)
    per_token = flops_per_token(model, cfg)
    print(f"model: {model.num_parameters() / 1e6:.1f}M parameters, {cfg.scratch_model}, batch {cfg.batchsize} x "
          f"{cfg.max_length} tokens, {torch.get_num_threads()} threads")
    short, long = args.steps
    print(f"{'precision':9s} {'plain tok/s':>11s} {'train.py tok/s':>14s} {'ratio':>6s} {'matmul GFLOP/s':>14s} "
          f"{'MFU plain':>9s} {'MFU train.py':>12s}")
    for precision in ("no", "bf16"):
        rates = {}
        for name, loop in (("plain", plain_loop), ("train.py", train_py_loop)):
            seconds = loop(cfg, tokenizer, blocks, long, precision) - loop(cfg, tokenizer, blocks, short, precision)
            rates[name] = (long - short) * tokens_per_step / seconds
        peak = matmul_flops(precision)
        label = "fp32" if precision == "no" else precision
        print(f"{label:9s} {rates['plain']:11.0f} {rates['train.py']:14.0f} {rates['train.py'] / rates['plain']:6.3f} "
              f"{peak / 1e9:14.1f} {rates['plain'] * per_token / peak:9.1%} {rates['train.py'] * per_token / peak:12.1%}")


if __name__ == "__main__":
    main()
