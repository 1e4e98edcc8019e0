"""train.py on tiny models and a tiny dataset: from scratch, fine-tuning a local "pretrained"
GPT-NeoX with its own BPE tokenizer, exact resume after SIGKILL, Ctrl-C, configuration errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, local_pretrained_model, run_script, write_config

def train_killed_when(marker, *arguments) -> None:
    """train.py run with `arguments` and killed (SIGKILL) as soon as `marker` (a path, or a
    function saying whether the moment has come) exists."""
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *map(str, arguments)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = marker if callable(marker) else marker.exists
    deadline = time.time() + 300
    while not ready() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def safetensors_of(folder):
    from safetensors.torch import load_file
    return load_file(str(folder / "model.safetensors"))


def test_from_scratch_trains_and_output_loads(tmp_path, tiny_dataset):
    out = tmp_path / "model"
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), max_steps=40, eval_every=20)
    result = run_script("train.py", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("validation", "test"):
        assert 0 < metrics[split]["bits_per_note"] < 20 and metrics[split]["notes"] > 0
    history = json.loads(next((out / "checkpoints").glob("step-*/trainer_state.json")).read_text())["history"]
    losses = [loss for _, loss in history["train"]]
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0  # it learns
    assert [step for step, _ in history["validation"]] == [20]  # the one at 40 is the final one, in metrics.json
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "bits per note" in (out / "README.md").read_text()
    assert json.loads((out / "train_config.json").read_text())["max_steps"] == 40

    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.convert_ids_to_tokens(tokenizer(" | K:0")["input_ids"]) == ["\u2581|", "\u2581K:0"]
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer, device="cpu")
    text = generator(" | K:0 T:4/4", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert text.startswith(" | K:0 T:4/4 ") and len(text.split()) == 11


def test_bits_per_note_is_exact_total(tmp_path, tiny_dataset):
    """Every token after the first is scored once: the blocks overlap by exactly one token."""
    from scorelm import lm
    pieces = [[2, 5, 6, 7, 5, 8], [2, 5, 9, 5, 6, 6, 6, 10]]
    blocks, forced = lm.pack_blocks(pieces, {2, 5}, max_length=5)
    assert blocks == [[2, 5, 6, 7, 5], [5, 8, 2, 5], [5, 9, 5], [5, 6, 6, 6, 10]]
    assert forced == 0
    assert sum(len(b) - 1 for b in blocks) == sum(map(len, pieces)) - 1
    # a piece kept whole (one shown for infilling): the block before it ends at its EOS instead
    pieces = [[2, 5, 6, 5, 7], [2, 5, 8, 5, 9, 5, 6], [2, 5, 7]]
    assert lm.pack_blocks(pieces, {2, 5}, max_length=8)[0] == [[2, 5, 6, 5, 7, 2, 5], [5, 8, 5, 9, 5, 6, 2, 5], [5, 7]]
    blocks, _ = lm.pack_blocks(pieces, {2, 5}, max_length=8, whole={1})
    assert blocks == [[2, 5, 6, 5, 7, 2], [2, 5, 8, 5, 9, 5, 6, 2], [2, 5, 7]]
    assert sum(len(b) - 1 for b in blocks) == sum(map(len, pieces)) - 1
    assert lm.pack_blocks(pieces, {2, 5}, max_length=6, whole={1})[0][1][:3] == [2, 5, 8]  # too long: cut as ever
    assert lm.count_notes(["| K:0 T:4/4 V1 C4:1 R:2 D#4:1^~ V2 R:4 ||"]) == 4


def test_fine_tune_local_pretrained_model(tmp_path, tiny_dataset):
    base = tmp_path / "tiny-pythia"
    base_vocabulary = local_pretrained_model(base)
    out = tmp_path / "tuned"
    config = write_config(tmp_path, from_scratch=False, model_name=str(base), dataset=str(tiny_dataset),
                          output_dir=str(out), max_steps=6)
    result = run_script("train.py", "--config", config)
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stderr.splitlines() if l.startswith("added"))
    added, before, after = int(line.split()[1]), int(line.split(":")[1].split()[0]), int(line.split("->")[1].split()[0])
    assert added > 100 and after < before / 3  # score symbols no longer split into pieces
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert len(tokenizer) == base_vocabulary + added == model.get_input_embeddings().weight.shape[0]
    assert tokenizer.decode(tokenizer(" | K:0 T:4/4 V1 C4:1")["input_ids"]) == " | K:0 T:4/4 V1 C4:1"
    assert json.loads((out / "metrics.json").read_text())["test"]["bits_per_note"] > 0


def test_moving_average_of_the_weights_is_what_gets_saved(tmp_path, tiny_dataset):
    import torch
    out = tmp_path / "model"
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), max_steps=12, eval_every=6,
                          save_every=12, ema_decay=0.8)
    result = run_script("train.py", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "(training weights: " in result.stderr
    validation = json.loads((out / "metrics.json").read_text())["validation"]
    assert validation["bits_per_note"] != validation["training_weights"]["bits_per_note"]
    checkpoint = out / "checkpoints" / "step-12"
    average = torch.load(checkpoint / "custom_checkpoint_0.pkl", weights_only=True)
    assert int(average["n_averaged"]) == 12
    saved = safetensors_of(out)
    training = safetensors_of(checkpoint)
    differing = 0
    for name, tensor in saved.items():
        # transformers 5 saves GPT-NeoX's lm_head under its checkpoint name, embed_out
        module_name = "lm_head.weight" if name == "embed_out.weight" else name
        assert torch.equal(tensor, average[f"module.{module_name}"]), name
        differing += not torch.equal(tensor, training[module_name])
    assert differing > len(saved) // 2  # the training weights themselves are not what was saved
    assert run_script("train.py", "--config", config, "--ema_decay", "1", "--overwrite").stderr.strip() \
        .endswith("config key ema_decay must be in [0, 1), not 1.0")


@pytest.mark.parametrize("ema_decay, unlikelihood_weight", [(0.0, 0.0), (0.9, 1.0)])
def test_exact_resume_after_sigkill(tmp_path, tiny_dataset, ema_decay, unlikelihood_weight):
    settings = dict(dataset=str(tiny_dataset), max_steps=24, save_every=3, keep_checkpoints=20, epochs=3,
                    gradient_accumulation_steps=2, eval_every=5, ema_decay=ema_decay,
                    unlikelihood_weight=unlikelihood_weight)
    reference = tmp_path / "reference"
    assert run_script("train.py", "--config", write_config(tmp_path, output_dir=str(reference), **settings)).returncode == 0

    killed = tmp_path / "killed"
    config = write_config(tmp_path, output_dir=str(killed), **settings)
    train_killed_when(killed / "checkpoints" / "step-9", "--config", config)
    assert not (killed / "model.safetensors").exists(), "the run finished before it was killed"
    resumed = run_script("train.py", "--config", config, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    expected, actual = safetensors_of(reference), safetensors_of(killed)
    assert expected.keys() == actual.keys()
    assert all((expected[k] == actual[k]).all() for k in expected)  # bit for bit
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (reference, killed)]
    assert metrics[0]["test"] == metrics[1]["test"]


def test_ctrl_c_saves_a_checkpoint(tmp_path, tiny_dataset):
    out = tmp_path / "model"
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), epochs=200)
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "tokenizer" / "tokenizer.json").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted: saved" in stderr and "Traceback" not in stderr
    saved = stderr.split("interrupted: saved ")[1].split(";")[0]
    latest = max((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    assert str(latest) == saved and (latest / "trainer_state.json").exists()
    assert not (out / "model.safetensors").exists()


@pytest.mark.parametrize("args, message", [
    (["--lerning_rate", "1"], "unknown option --lerning_rate"),
    (["--batchsize", "two"], "--batchsize: 'two' is not a valid int"),
    (["--lr_scheduler", "sometimes"], "lr_scheduler"),
    (["--from_scratch", "false", "--model_name", "./no/such/model"], "no such directory"),
    (["--dataset", "/no/such/dataset"], "run python generate_data.py first"),
    (["--config", "/no/such.json"], "no such config file"),
    (["--scratch_model", '{"hidden_sise": 8}'], "scratch_model"),
    (["--unlikelihood_weight", "-1"], "unlikelihood_weight must not be negative"),
])
def test_configuration_errors_are_one_line(tmp_path, tiny_dataset, args, message):
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(tmp_path / "out"))
    result = run_script("train.py", "--config", config, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_unknown_key_in_config_file_suggests_the_right_one(tmp_path):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"batch_size": 8}))
    result = run_script("train.py", "--config", config)
    assert result.returncode == 2 and "did you mean batchsize?" in result.stderr


def test_refuses_to_overwrite_a_run(tmp_path, tiny_dataset):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_text("precious")
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out))
    result = run_script("train.py", "--config", config)
    assert result.returncode == 2 and "--resume" in result.stderr
    assert (out / "model.safetensors").read_text() == "precious"


def test_help_lists_every_config_key():
    from scorelm.config import FIELDS
    result = run_script("train.py", "--help")
    assert result.returncode == 0
    assert all(f"--{name}" in result.stdout for name in FIELDS)


def free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accelerate_launch(*args, env=None):
    """A fresh rendezvous port each time: the default one may still be held by the last run."""
    return subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", str(free_port()),
                           *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=900)


def test_two_processes_on_cpu(tmp_path, tiny_dataset):
    """`--cpu --num_processes 2` silently runs one process; this is the way that runs two."""
    out = tmp_path / "model"
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), max_steps=6, save_every=3)
    result = accelerate_launch("--multi_gpu", "--num_processes", 2, "--num_machines", 1, "--mixed_precision", "no",
                               "--dynamo_backend", "no", "train.py", "--config", config,
                               env={"ACCELERATE_USE_CPU": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["distributed_type"] == "DistributedType.MULTI_CPU"
    assert metrics["cpu_threads"] == max(1, len(os.sched_getaffinity(0)) // 2)  # the cores shared
    assert sorted(p.name for p in (out / "checkpoints" / "step-6").glob("random_states_*")) == \
        ["random_states_0.pkl", "random_states_1.pkl"]


def test_accelerate_launch_on_cpu_uses_every_core(tmp_path, tiny_dataset):
    """`accelerate launch train.py`, as users type it, sets OMP_NUM_THREADS=1 on a machine without
    a GPU: train.py still trains with every core it may use (a config's cpu_threads wins)."""
    out = tmp_path / "model"
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), max_steps=2, eval_every=0)
    result = accelerate_launch("--num_processes", 1, "--num_machines", 1, "--mixed_precision", "no",
                               "--dynamo_backend", "no", "train.py", "--config", config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["cpu_threads"] == len(os.sched_getaffinity(0))
    result = accelerate_launch("--num_processes", 1, "--num_machines", 1, "--mixed_precision", "no",
                               "--dynamo_backend", "no", "train.py", "--config", config, "--cpu_threads", 1,
                               "--output_dir", tmp_path / "one")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["cpu_threads"] == 1


def test_deepspeed_zero2_on_two_cpu_processes(tmp_path, tiny_dataset):
    out = tmp_path / "model"
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), max_steps=4, save_every=4)
    result = accelerate_launch("--config_file", ROOT / "accel_config.yaml", "--num_processes", 2,
                               "train.py", "--config", config)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["distributed_type"] == "DistributedType.DEEPSPEED"
    assert metrics["mixed_precision"] == "bf16" and metrics["test"]["bits_per_note"] > 0
    # ZeRO-2: each process saved its own shard of the optimizer states
    shards = sorted(p.name for p in (out / "checkpoints" / "step-4").rglob("*optim_states.pt"))
    assert len(shards) == 2
    from transformers import AutoModelForCausalLM
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() > 0


def test_ready_configs_load():
    from conftest import ROOT as root
    from scorelm import config as configuration
    names = sorted(p.name for p in (root / "configs").glob("*.json"))
    assert {"cpu_quickstart.json", "cpu_hour.json", "gpu_pythia160m.json", "gpu_pythia410m.json",
            "gpu_pythia1b.json"} <= set(names)
    for name in names + ["../train_cfg.json"]:
        configuration.load_config(root / "configs" / name)


def test_readme_documents_every_config_key():
    from scorelm.config import FIELDS
    readme = (ROOT / "README.md").read_text()
    assert all(f"| `{name}` |" in readme for name in FIELDS)


def test_tensorboard_logging(tmp_path, tiny_dataset):
    out = tmp_path / "model"
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), max_steps=4, eval_every=2,
                          report_to="tensorboard")
    result = run_script("train.py", "--config", config)
    assert result.returncode == 0, result.stderr
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(next((out / "runs").rglob("events.out.tfevents*")).parent))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("validation/bits_per_note")] == [2]


def test_malformed_dataset_is_one_line_error(tmp_path, tiny_dataset):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dataset, broken)
    with open(broken / "train.jsonl", "a") as f:
        f.write("{not json\n")
    config = write_config(tmp_path, dataset=str(broken), output_dir=str(tmp_path / "out"))
    result = run_script("train.py", "--config", config)
    assert result.returncode == 2 and f"{broken / 'train.jsonl'} line" in result.stderr and "not JSON" in result.stderr
    assert "Traceback" not in result.stderr


KEYBOARD = ["schumann_clara/polonaise_op1n1.mxl", "schumann_clara/polonaise_op1n2.mxl",
            "schumann_clara/polonaise_op1n3.mxl", "schumann_clara/polonaise_op1n4.mxl",
            "joplin/maple_leaf_rag.mxl", "chopin/mazurka06-2.krn"]


def test_a_keyboard_corpus_trains_and_samples_pianos(tmp_path):
    """Piano pieces from music21's corpus (Clara Schumann's polonaises, Joplin, Chopin) through
    generate_data.py, train.py and infer.py: the model writes its training pieces' usual layout
    (a piano with two voices on a staff), chords and voices absent from measures, every sample valid with zero
    repairs, and reconstruct.py makes a braced piano of it."""
    from music21 import corpus

    from scorelm import language
    files = [str(corpus.getWork(name)) for name in KEYBOARD]
    result = run_script("generate_data.py", "--input", *files, "--output", tmp_path / "data")
    assert result.returncode == 0, result.stderr
    config = write_config(tmp_path, dataset=str(tmp_path / "data"), output_dir=str(tmp_path / "model"), max_steps=60,
                          max_length=256)
    result = run_script("train.py", "--config", config)
    assert result.returncode == 0, result.stderr
    metadata = json.loads((tmp_path / "model" / "scorelm.json").read_text())
    voices = metadata["voices"]
    layout = tuple(tuple(staves) for staves in metadata["parts"][str(voices)])
    train = [json.loads(line) for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    assert any(language.parse(r["text"])[0][0].parts == layout for r in train if r["voices"] == voices)
    assert max(max(staves) for staves in layout) >= 2  # several voices on a staff
    result = run_script("infer.py", "|", "--model", tmp_path / "model", "--num-samples", 6, "--measures", 4,
                        "--seed", 2, "-o", tmp_path / "samples.txt")
    assert result.returncode == 0, result.stderr
    texts = (tmp_path / "samples.txt").read_text().split("\n")
    texts = [t for t in texts if t.strip()]
    assert len(texts) == 6
    for text in texts:
        pieces, report = language.parse(text)
        assert report.total == 0, report.lines()
        assert len(pieces) == 1 and pieces[0].parts == layout and len(pieces[0].measures) == 4
    assert any(" +" in text for text in texts)  # chords
    assert any(any(not events for events in m.voices) for t in texts for m in language.parse(t)[0][0].measures)
    # surprisal of a piano piece: one row per note, rest and chord note, the page's tooltips on each
    import csv
    source = str(corpus.getWork("schumann_clara/polonaise_op1n3.mxl"))
    result = run_script("infer.py", "--surprisal", source, "--model", tmp_path / "model", "-o", tmp_path / "polo")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "polo.surprisal.csv")))
    from scorelm import lm
    text = language.encode_score(language.read_score(source))
    assert len(rows) == lm.count_notes([text]) and " +" in text
    page = (tmp_path / "polo.surprisal.html").read_text()
    assert page.count("<title>") >= 0.9 * len(rows)
    (tmp_path / "one.txt").write_text(texts[0] + "\n")
    assert run_script("reconstruct.py", tmp_path / "one.txt").returncode == 0
    score = language.read_score(tmp_path / "one.musicxml")
    assert sum(type(p).__name__ == "PartStaff" for p in score.parts) >= 2  # a braced piano
    assert language.encode_score(score) == language.parse(texts[0])[0][0].to_text()


def test_tied_embeddings_with_the_moving_average_are_saved_tied(tmp_path, tiny_dataset):
    """configs/cpu_hour.json ties the input and output embeddings: the saved model reads back
    with one table, holding the moving average."""
    from transformers import AutoModelForCausalLM
    out = tmp_path / "model"
    shape = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
             "tie_word_embeddings": True}
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), max_steps=6, ema_decay=0.8,
                          scratch_model=shape)
    result = run_script("train.py", "--config", config)
    assert result.returncode == 0, result.stderr
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is True


def test_unlikelihood_weight_takes_probability_from_what_the_rules_forbid(tmp_path, tiny_dataset):
    """The same run with and without unlikelihood_weight: the model trained with it puts less of
    its probability on the words the decoder's hard rules forbid in the pieces it trained on (where
    Bach's own word keeps them), as the saved models say."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from scorelm import dataset, decoding, lm
    from scorelm.decoding.unlikelihood import forbidden_notes
    penalties = {}
    for weight in (0.0, 5.0):
        out = tmp_path / f"weight{weight:g}"
        config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), max_steps=60,
                              save_every=60, unlikelihood_weight=weight)
        result = run_script("train.py", "--config", config)
        assert result.returncode == 0, result.stderr
        history = json.loads((out / "checkpoints" / "step-60" / "trainer_state.json").read_text())["history"]
        assert len(history.get("unlikelihood", [])) == (60 if weight else 0)
        model, tokenizer = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
        vocabulary = decoding.Vocabulary.from_tokenizer(tokenizer)
        pieces = [lm.piece_ids(tokenizer, r["text"]) for r in dataset.read_jsonl(tiny_dataset / "train.jsonl")][:16]
        pieces = [ids[:128] for ids in pieces]  # within the tiny model's context
        places = [forbidden_notes(vocabulary, ids, 4) for ids in pieces]
        batch = lm.collate(pieces, tokenizer.pad_token_id,
                           [np.concatenate([[[p, i] for i in ids] for p, ids in found]) for found in places])
        assert len(batch["forbidden"]) > 100
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        penalties[weight] = lm.forbidden_mass_penalty(logits, batch["forbidden"]).item()
    assert penalties[5.0] < 0.9 * penalties[0.0], penalties  # 0.060 against 0.075 when written


def test_fine_tuning_a_word_level_model_keeps_its_words_and_gains_new_ones_whole(tmp_path):
    """A ScoreLM model from scratch fine-tuned on new words (a grace note 'D5:0' beside the known
    'D5:0.5'): every word it knew keeps its id, each new word is one new id, none is cut inside a
    word (an added token ' D5:0' once cut ' D5:0.5' into ' D5:0' and an unknown '.5'), and the
    tokenizer reads back the same from disk."""
    from transformers import AutoTokenizer
    from scorelm import lm
    known = "| K:0 T:4/4 L:1 V1 D5:0.5 D5:0.5 C5:1 E5:2 |"
    new = "| K:0 T:4/4 L:1 V1 D5:0 D5:0.5 D5:0.5 C5:1 F5:2^ |"
    tokenizer = lm.train_word_tokenizer([known])
    before = tokenizer(lm.model_text(known), add_special_tokens=False)["input_ids"]
    size = len(tokenizer)
    assert tokenizer.unk_token_id in tokenizer(lm.model_text(new), add_special_tokens=False)["input_ids"]
    assert lm.add_score_tokens(tokenizer, [new]) == 2  # D5:0 and F5:2^
    assert len(tokenizer) == size + 2
    assert tokenizer(lm.model_text(known), add_special_tokens=False)["input_ids"] == before
    ids = tokenizer(lm.model_text(new), add_special_tokens=False)["input_ids"]
    assert len(ids) == len(new.split()) and tokenizer.unk_token_id not in ids
    assert sorted(set(ids) - set(before)) == [size, size + 1]
    assert tokenizer.decode(ids).split() == new.split()
    tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)(lm.model_text(new), add_special_tokens=False)["input_ids"] == ids
    assert lm.add_score_tokens(tokenizer, [new]) == 0


def _sample_text(model_dir) -> str:
    result = run_script("infer.py", "|", "--model", model_dir, "--seed", "3", "--max-new-tokens", "40")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_an_interrupted_overwrite_leaves_the_old_model_whole(tmp_path, tiny_dataset):
    """train.py --overwrite over a finished model, killed mid-run: the folder still holds the old
    model, which loads and samples exactly as before (the new run's tokenizer waits beside its
    checkpoints); finishing the new run then replaces the model whole."""
    out = tmp_path / "model"
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), max_steps=6)
    assert run_script("train.py", "--config", config).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    sample = _sample_text(out)
    second = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), epochs=200, save_every=2,
                          seed=7, scratch_model={"hidden_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2,
                                                 "intermediate_size": 96})
    def new_checkpoint() -> bool:  # any of the new run's (pruned as it goes: one may live a few ms)
        for state in (out / "checkpoints").glob("step-*/trainer_state.json"):
            try:
                if json.loads(state.read_text())["config"]["seed"] == 7:
                    return True
            except (OSError, ValueError):
                pass
        return False

    train_killed_when(new_checkpoint, "--config", second, "--overwrite")
    assert (out / "checkpoints" / "tokenizer" / "tokenizer.json").is_file()
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".train.lock"} == before
    assert _sample_text(out) == sample
    resumed = run_script("train.py", "--config", second, "--resume", "--max_steps", "6")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "model.safetensors").read_bytes() != before["model.safetensors"]
    import hashlib
    assert json.loads((out / "scorelm.json").read_text())["files"]["tokenizer_sha256"] == \
        hashlib.sha256((out / "tokenizer.json").read_bytes()).hexdigest()
    assert not (out / ".train.lock").exists() and not (out / ".staging-model").exists()


def test_a_model_folder_that_mixes_two_runs_or_is_damaged_is_refused_in_one_line(tmp_path, tiny_model):
    import shutil
    cases = {
        "mixed": lambda d: (d / "tokenizer.json").write_text((d / "tokenizer.json").read_text().replace("C4", "X4")),
        "half weights": lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:5000]),
        "empty weights": lambda d: (d / "model.safetensors").write_bytes(b""),
        "no tokenizer": lambda d: (d / "tokenizer.json").unlink(),
        "bad config": lambda d: (d / "config.json").write_text("{not json"),
        "bad scorelm.json": lambda d: (d / "scorelm.json").write_text("[1, 2"),
        "bad train_config.json": lambda d: (d / "train_config.json").write_text(""),
    }
    messages = {"mixed": "mixes files of two runs", "half weights": "truncated", "empty weights": "truncated",
                "no tokenizer": "no tokenizer", "bad config": "config.json is damaged",
                "bad scorelm.json": "scorelm.json is damaged", "bad train_config.json": "train_config.json is damaged"}
    for name, damage in cases.items():
        folder = tmp_path / name.replace(" ", "-")
        shutil.copytree(tiny_model, folder)
        damage(folder)
        result = run_script("infer.py", "|", "--model", folder, "-o", tmp_path / f"{folder.name}.txt")
        assert result.returncode == 2, (name, result.stderr)
        assert messages[name] in result.stderr and "Traceback" not in result.stderr, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)
        assert not (tmp_path / f"{folder.name}.txt").exists()


def test_resume_skips_a_damaged_latest_checkpoint_and_a_finished_run_is_left_alone(tmp_path, tiny_dataset):
    """The latest checkpoint damaged (a truncated weights file; a broken trainer state): --resume
    warns and continues from the one before, bit for bit as the run that was never damaged;
    --resume on the finished run says so and changes nothing."""
    settings = dict(dataset=str(tiny_dataset), max_steps=12, save_every=3, keep_checkpoints=20)
    reference = tmp_path / "reference"
    assert run_script("train.py", "--config", write_config(tmp_path, output_dir=str(reference), **settings)).returncode == 0
    for damage in ("weights", "state"):
        out = tmp_path / damage
        config = write_config(tmp_path, output_dir=str(out), **settings)
        assert run_script("train.py", "--config", config).returncode == 0
        latest = out / "checkpoints" / "step-12"
        if damage == "weights":
            weights = next(latest.rglob("*.safetensors"))
            weights.write_bytes(weights.read_bytes()[:-100])
        else:
            (latest / "trainer_state.json").write_text('{"step": 12, "conf')
        (out / "model.safetensors").unlink()
        resumed = run_script("train.py", "--config", config, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert "skipping the damaged checkpoint" in resumed.stderr and "resumed from" in resumed.stderr
        assert "step-9" in resumed.stderr.split("resumed from")[1].split("\n")[0]
        expected, actual = safetensors_of(reference), safetensors_of(out)
        assert expected.keys() == actual.keys() and all((expected[k] == actual[k]).all() for k in expected), damage
    finished = {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()}
    config = write_config(tmp_path, output_dir=str(reference), **settings)
    again = run_script("train.py", "--config", config, "--resume")
    assert again.returncode == 0 and "holds a finished run" in again.stderr, again.stderr
    assert {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()} == finished


def test_two_runs_in_one_output_folder_are_refused_and_a_stale_lock_does_not_block(tmp_path, tiny_dataset):
    out = tmp_path / "model"
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), epochs=200)
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "tokenizer").exists() and time.time() < deadline:
        time.sleep(0.1)
    second = run_script("train.py", "--config", config, "--overwrite")
    assert second.returncode == 2 and "in use by another training run" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (out / ".train.lock").is_file()  # left by the killed run
    third = run_script("train.py", "--config", config, "--overwrite", "--epochs", "1", "--max_steps", "2")
    assert third.returncode == 0, third.stderr
    assert (out / "model.safetensors").is_file() and not (out / ".train.lock").exists()
