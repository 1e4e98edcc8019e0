"""Benchmark scripts are used by people too: run where their inputs are missing, each says in one
line what to run first (no traceback)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.parametrize("script, needs", [
    ("bench_train.py", "python generate_data.py"),
    ("bench_tokens.py", "python generate_data.py"),
    ("bench_sampling.py", "quickstart.sh"),
    ("bench_rules.py", "quickstart.sh"),
    ("bench_render.py", "quickstart.sh"),
    ("bench_infill.py", "quickstart.sh"),
])
def test_bench_script_without_its_inputs_says_what_to_run(script, needs, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "bench" / script)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needs in lines[0] and "Traceback" not in result.stderr
