"""What every ScoreLM script does the same way: one-line errors for users, exit codes."""
from __future__ import annotations

import os
import sys
from pathlib import Path


class UserError(Exception):
    """A problem with what the user gave us (a file, an option, a config key): reported as one
    line on stderr, no traceback, exit code `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def run(main) -> None:
    """Run a script's main(); UserError becomes a one-line message, Ctrl-C exit 130."""
    program = Path(sys.argv[0]).name
    try:
        sys.exit(main())
    except UserError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        sys.exit(error.code)
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        sys.exit(130)


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
