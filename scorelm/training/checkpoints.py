"""Checkpoints saved whole (a temporary folder renamed into place), the latest intact one found
for a resume, a finished run recognised, and the lock that keeps two runs out of one folder."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from scorelm import model_folder
from scorelm.cli import check_writable_folder

CHECKPOINTS = "checkpoints"
STAGING = ".staging-model"  # the finished model is written here, then moved into place
RUN_TOKENIZER = "tokenizer"  # under checkpoints/: the run's tokenizer, so that a resume tokenizes as it did
STATE_FILE = "trainer_state.json"



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
