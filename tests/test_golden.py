"""Golden outputs: with the tiny test model (conftest's recipe, which trains bit for bit alike
on any thread count) and fixed seeds, infer.py writes exactly the samples, continuations,
harmonizations and surprisal CSVs recorded in tests/golden/ before the inference code was
reorganised (issue 32). A change that means to change what is written records them again:

    SCORELM_RECORD_GOLDEN=1 python -m pytest tests/test_golden.py

and says why in its commit."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import run_script

GOLDEN = Path(__file__).parent / "golden"
RECORD = os.environ.get("SCORELM_RECORD_GOLDEN") == "1"

# name -> infer.py's arguments (after --model); "{chorale}" and "{tune}" are melodies copied next to the run
CASES = {
    "free_samples": ["|", "--num-samples", 3, "--seed", 11],
    "free_soft_particles": ["|", "--num-samples", 2, "--seed", 12, "--rules", "soft", "--particles", 2,
                            "--measures", 4],
    "free_hard_header": ["|", "--key", "D", "--time", "3/4", "--measures", 5, "--rules", "hard", "--seed", 13,
                         "--num-samples", 2],
    "unconstrained": ["|", "--no-constrain", "--seed", 14, "--max-new-tokens", 60],
    "continuation": ["--prompt-score", "{chorale}", "--prompt-measures", 2, "--num-samples", 2, "--seed", 15],
    "harmonization": ["--harmonize", "{chorale}", "--seed", 16],
    "harmonization_folk_tune": ["--harmonize", "{tune}", "--seed", 17, "--particles", 1],
    "surprisal": ["--surprisal", "{chorale}", "-o", "golden"],
    "surprisal_short_term": ["--surprisal", "{chorale}", "--short-term", "-o", "golden", "--overwrite"],
}


@pytest.fixture(scope="module")
def melodies(tmp_path_factory):
    from music21 import corpus
    folder = tmp_path_factory.mktemp("golden")
    shutil.copy(corpus.getWork("bach/bwv66.6"), folder / "bwv66.6.mxl")
    # an Essen tune in 2/4 (harmonized two measures as one) with notes moved for the model
    tune = corpus.parse("essenFolksong/kinder0.abc", number=2)
    tune.write("musicxml", fp=folder / "tune.musicxml")
    return folder


@pytest.mark.parametrize("name", CASES)
def test_infer_writes_what_it_wrote_before(tiny_model, melodies, name):
    arguments = [str(a).format(chorale="bwv66.6.mxl", tune="tune.musicxml") for a in CASES[name]]
    result = run_script("infer.py", *arguments, "--model", tiny_model, cwd=melodies)
    assert result.returncode == 0, result.stderr
    written = (melodies / "golden.surprisal.csv").read_text() if "--surprisal" in arguments else result.stdout
    path = GOLDEN / f"{name}.txt"
    if RECORD:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(written)
    expected = path.read_text()
    if "--surprisal" in arguments:
        assert_same_table(written, expected, name)
    else:
        assert written == expected, f"{name}: infer.py wrote other output than tests/golden/{name}.txt"


def assert_same_table(written: str, expected: str, name: str) -> None:
    """The same CSV: every word equal, every number to 1 part in 10,000 (the last of the five
    significant digits written moves with a CPU's vector instructions, as under
    ATEN_CPU_CAPABILITY=default; the samples do not)."""
    import csv
    import math
    rows, golden = list(csv.reader(written.splitlines())), list(csv.reader(expected.splitlines()))
    assert len(rows) == len(golden) and rows[0] == golden[0], name
    for row, want in zip(rows[1:], golden[1:]):
        assert len(row) == len(want), (name, row)
        for column, value, other in zip(rows[0], row, want):
            try:
                number, target = float(value), float(other)
            except ValueError:
                assert value == other, (name, column, row)
                continue
            assert math.isclose(number, target, rel_tol=1e-4, abs_tol=1e-4), (name, column, value, other)
