"""Ctrl-C and SIGTERM stop every command the same way (issue 30): the workers stopped, nothing
written after the signal, the files written whole kept and no partial ones left, exit 130 or 143
with one line and no traceback."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT


def start(script: str, *args, cwd) -> subprocess.Popen:
    """The command in a process group of its own, with Ctrl-C's default action: a test run
    started in the background of a non-interactive shell (nohup ... &) inherits SIGINT ignored,
    and a Python started so never raises KeyboardInterrupt, as no terminal would leave it."""
    return subprocess.Popen([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(condition, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def group_gone(process: subprocess.Popen, seconds: float = 10) -> bool:
    """No process of the command's group (its workers) is left."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("how, code", [("ctrl-c", 130), ("sigterm", 143)])
def test_reconstruct_stops_cleanly(chorale_texts, tmp_path, how, code):
    text = "\n".join(list(chorale_texts.values()) * 2)  # ten pieces, rendered two at a time
    (tmp_path / "many.txt").write_text(text)
    process = start("reconstruct.py", "many.txt", "--png", "--audio", "--midi", "--page", cwd=tmp_path)
    wait_for(lambda: any(tmp_path.glob("many-*.mp3")) or process.poll() is not None)
    assert process.poll() is None, process.communicate()
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)  # as a terminal sends it: to every process of the group
    else:
        process.send_signal(signal.SIGTERM)  # as `kill` sends it: to the command alone
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("reconstruct.py: ")
    assert group_gone(process), "worker processes left running"
    written = sorted(p.name for p in tmp_path.iterdir())
    time.sleep(1.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == written, "files written after the signal"
    assert not [name for name in written if ".partial-" in name], written
    assert "many.html" not in written  # the page is written only for a complete run
    assert 0 < len([name for name in written if name.endswith(".musicxml")]) < 10


def test_generate_data_stops_cleanly_on_sigterm(tmp_path):
    process = start("generate_data.py", "--output", tmp_path / "data", "--workers", 2, cwd=tmp_path)
    time.sleep(4)  # music21 imported, the workers encoding
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert group_gone(process), "worker processes left running"
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
