"""Outputs in places that cannot be written, and outputs that would replace another: every
command refuses in one line with exit 2, before any slow work, and writes nothing."""
from __future__ import annotations

import pytest
from conftest import run_script, write_config

TEXT = "| K:0 T:4/4 V1 C5:4 V2 E4:4 V3 G3:4 V4 C3:4 ||\n"


def listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*"))


def command(name, tmp_path, tiny_model, tiny_dataset):
    score = tmp_path / "piece.txt"
    a_file = tmp_path / "base.txt"
    return {
        "generate_data under a file": ["generate_data.py", "--limit", "2", "--output", a_file / "data"],
        "generate_data in /proc": ["generate_data.py", "--limit", "2", "--output", "/proc/self/data"],
        "infer under a file": ["infer.py", "|", "--model", tiny_model, "-o", a_file / "x.txt"],
        "infer in /proc": ["infer.py", "|", "--model", tiny_model, "-o", "/proc/self/x.txt"],
        "infer -o is a folder": ["infer.py", "|", "--model", tiny_model, "-o", tmp_path],
        "infer text where render writes": ["infer.py", "|", "--model", tiny_model, "-o", tmp_path / "out.musicxml",
                                           "--render"],
        "surprisal under a file": ["infer.py", "--surprisal", score, "--model", tiny_model, "-o", a_file / "x.csv"],
        "reconstruct under a file": ["reconstruct.py", score, "-o", a_file / "x.musicxml"],
        "reconstruct in /proc": ["reconstruct.py", score, "-o", "/proc/self/x.musicxml"],
        "train under a file": ["train.py", "--config", tmp_path / "cfg.json", "--dataset", tiny_dataset,
                               "--output_dir", a_file / "model"],
        "train in /proc": ["train.py", "--config", tmp_path / "cfg.json", "--dataset", tiny_dataset,
                           "--output_dir", "/proc/self/model"],
    }[name]


@pytest.mark.parametrize("name", [
    "generate_data under a file", "generate_data in /proc", "infer under a file", "infer in /proc",
    "infer -o is a folder", "infer text where render writes", "surprisal under a file", "reconstruct under a file",
    "reconstruct in /proc", "train under a file", "train in /proc"])
def test_an_output_that_cannot_be_written_is_one_line(name, tmp_path, tiny_model, tiny_dataset):
    (tmp_path / "piece.txt").write_text(TEXT)
    (tmp_path / "base.txt").write_text("a file, not a folder\n")
    write_config(tmp_path)
    arguments = command(name, tmp_path, tiny_model, tiny_dataset)
    before = listing(tmp_path)
    result = run_script(*arguments)
    assert result.returncode == 2, (name, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, (name, result.stderr)
    assert "cannot write" in lines[0] or "folder" in lines[0] or "--render writes" in lines[0], lines[0]
    assert listing(tmp_path) == before, name


def test_generate_data_keeps_a_summary_it_did_not_write(tmp_path):
    """A folder holding only a summary.json: refused without --overwrite, the file kept."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "summary.json").write_text('{"mine": true}\n')
    result = run_script("generate_data.py", "--limit", "2", "--output", tmp_path / "data")
    assert result.returncode == 2 and "summary.json exists" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "data" / "summary.json").read_text() == '{"mine": true}\n'
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["summary.json"]


@pytest.mark.parametrize("line, message", [
    ('{"id": "x"}', 'line 2: no "text" field'),
    ('{"text": 5}', 'line 2: field "text" should be str, not int'),
    ('{"text": "| K:0 T:4/4 V1 C4:4 ||", "voices": "four"}', 'line 2: field "voices" should be int, not str'),
    ('[1, 2]', "line 2: not a JSON object but list"),
    ('{"text": ', "line 2: not JSON"),
])
def test_dataset_records_are_checked_against_the_schema(tmp_path, tiny_dataset, tiny_model, line, message):
    """A bad record in a split: train.py and infer.py --evaluate name the file, the line and the
    field in one line, and write nothing."""
    import shutil
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    lines = (data / "train.jsonl").read_text().splitlines()
    (data / "train.jsonl").write_text("\n".join(lines[:1] + [line] + lines[1:]) + "\n")
    config = write_config(tmp_path, dataset=str(data), output_dir=str(tmp_path / "model"))
    before = listing(tmp_path)
    for arguments in (["train.py", "--config", config],
                      ["infer.py", "--evaluate", "--model", tiny_model, "--dataset", data, "-o", tmp_path / "card.json"]):
        result = run_script(*arguments)
        assert result.returncode == 2, result.stderr
        assert f"{data / 'train.jsonl'} {message}" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert listing(tmp_path) == before


def test_device_choice_runs_on_the_cpu_and_refuses_an_absent_gpu(tmp_path, tiny_model):
    """--device cpu samples exactly what the default does on a machine without a GPU; a GPU asked
    for and absent is one line, exit 2, nothing written."""
    import torch
    default = run_script("infer.py", "|", "--model", tiny_model, "--seed", "5", "--max-new-tokens", "40")
    on_cpu = run_script("infer.py", "|", "--model", tiny_model, "--seed", "5", "--max-new-tokens", "40",
                        "--device", "cpu")
    assert default.returncode == 0 and on_cpu.returncode == 0, on_cpu.stderr
    if not torch.cuda.is_available():
        assert default.stdout == on_cpu.stdout
        result = run_script("infer.py", "|", "--model", tiny_model, "--device", "cuda", "-o", tmp_path / "x.txt")
        assert result.returncode == 2 and "no CUDA GPU here" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.txt").exists()
