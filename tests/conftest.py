"""Shared test helpers. Tests never touch the network: the Hub is switched off here."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROUND_TRIP_RESULTS: dict[str, bool] = {}


def run_script(script: str, *args, stdin: str | None = None, env: dict | None = None, cwd=None,
               timeout: int = 600) -> subprocess.CompletedProcess:
    """Run one of the top-level scripts as a user would."""
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], input=stdin,
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          cwd=cwd, timeout=timeout)


@pytest.fixture(scope="session")
def chorale_texts() -> dict[str, str]:
    """Encoded text of a handful of real chorales (pickup, 3/4, key and meter changes, ties)."""
    from music21 import corpus
    from scorelm import language
    names = ["bach/bwv66.6.mxl", "bach/bwv67.4.xml", "bach/bwv171.6.mxl", "bach/bwv277.krn", "bach/bwv362.mxl"]
    return {name: language.encode_score(corpus.parse(name)) for name in names}


def pytest_terminal_summary(terminalreporter):
    if ROUND_TRIP_RESULTS:
        passed = sum(ROUND_TRIP_RESULTS.values())
        total = len(ROUND_TRIP_RESULTS)
        terminalreporter.write_line(
            f"corpus round trip: {total}/{total} chorales pass ({passed} exact, {total - passed} documented "
            f"exceptions); exact rate {100 * passed / total:.1f}%")
