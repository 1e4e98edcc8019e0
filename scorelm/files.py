"""Every file the commands write is written one way: under a temporary name beside it, then
renamed into place, so that an interrupted run leaves whole files or none (what save_pretrained's
callers and Lightning's checkpoints do); an OS error (permission, not a folder, no space) is one
line naming the path. Existing outputs are refused before any slow work (cli.check_can_write).

The temporary name keeps the file's suffix (matplotlib, soundfile and music21 choose the format
by it) and is hidden: `.sample-1.partial-4711.wav` for `sample-1.wav`, 4711 the writing process.
"""
from __future__ import annotations

import contextlib
import glob
import os
from pathlib import Path

from scorelm.cli import UserError

PARTIAL = ".partial-"


def temporary_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.stem}{PARTIAL}{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def replacing(path: Path):
    """Yields a temporary path to write `path`'s content to; renamed into place when the block
    ends without an exception, removed when it ends with one (Ctrl-C included)."""
    path = Path(path)
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        _remove(temporary)
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        _remove(temporary)
        raise


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> Path:
    with replacing(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    with replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def remove_partial(paths) -> None:
    """Remove what writers that were stopped (a worker process killed) left of these outputs."""
    for path in paths:
        path = Path(path)
        # the path's own, and its further pages' (sample-2.png beside sample.png)
        pattern = glob.escape(f".{path.stem}") + "*" + glob.escape(PARTIAL) + "*" + glob.escape(path.suffix)
        for leftover in path.parent.glob(pattern):
            leftover.unlink(missing_ok=True)
