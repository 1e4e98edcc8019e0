"""What every ScoreLM script does the same way: one-line errors for users, exit codes, Ctrl-C
and SIGTERM, worker processes."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


class UserError(Exception):
    """A problem with what the user gave us (a file, an option, a config key): reported as one
    line on stderr, no traceback, exit code `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, as Ctrl-C raises KeyboardInterrupt: the same
    clean-up runs (workers stopped, partial files removed), and the exit code is 143."""


def _terminated(signum, frame):
    raise Terminated()


def run(main) -> None:
    """Run a script's main(); UserError becomes a one-line message; Ctrl-C (SIGINT) and SIGTERM
    stop it the same way, without a traceback, exit 130 and 143. (train.py's loop catches both
    itself, to save a checkpoint first.)"""
    program = Path(sys.argv[0]).name
    signal.signal(signal.SIGTERM, _terminated)
    try:
        sys.exit(main())
    except UserError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        sys.exit(error.code)
    except KeyboardInterrupt as interrupt:
        terminated = isinstance(interrupt, Terminated)
        print(f"{program}: {'terminated' if terminated else 'interrupted'}; complete files kept, partial ones removed",
              file=sys.stderr)
        sys.exit(143 if terminated else 130)


def quiet_worker() -> None:
    """A worker process's initializer: Ctrl-C in the terminal reaches every process of the group,
    but only the parent acts on it (it stops the workers, without their tracebacks); SIGTERM
    ends a worker at once (the parent's pool sends it when it stops them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def check_can_write(path: Path, overwrite: bool) -> None:
    """Before any slow work: refuse to replace an existing output unless asked to, and refuse a
    place that cannot be written (under a file, a folder without permission, /proc)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")
    check_writable_folder(path.parent)


def check_writable_folder(folder: Path) -> None:
    """That files can be created in `folder` (or in the folders that will be made for it): its
    nearest existing ancestor is a folder we can write in, tried with a probe file."""
    import tempfile
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write in {folder}: {existing} is a file, not a folder")
    try:
        descriptor, probe = tempfile.mkstemp(dir=existing, prefix=".scorelm-probe-")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise UserError(f"cannot write in {folder}: {error.strerror or error}") from None


def worker_count(requested: int | None) -> int:
    """`requested`, else the cores this process may use (all of them where the OS cannot say:
    macOS has no sched_getaffinity)."""
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores)


def fork_map(function, items, workers: int | None = None, chunksize: int = 1) -> list:
    """[function(item) for item in items], on up to `workers` forked processes (None: every core
    this process may use). Forked, so the workers start with everything imported; one at a time
    where there is one worker, where the platform cannot fork, or inside a pool's worker (which
    may not start its own). Leaving early (an error, Ctrl-C, SIGTERM) terminates the workers."""
    import multiprocessing
    items = list(items)
    workers = min(worker_count(workers), len(items))
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods() \
            or multiprocessing.current_process().daemon:
        return [function(item) for item in items]
    with multiprocessing.get_context("fork").Pool(workers, initializer=quiet_worker) as pool:
        return pool.map(function, items, chunksize=chunksize)
