"""Shared test helpers. Tests never touch the network: the Hub is switched off here."""
from __future__ import annotations

import os
import json
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


TINY = {"from_scratch": True, "max_length": 128, "batchsize": 4, "lr": 3e-3, "warmup_steps": 2,
        "scratch_model": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                          "intermediate_size": 64}, "eval_every": 0, "save_every": 0, "epochs": 1}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "dataset"
    result = run_script("generate_data.py", "--limit", "40", "--output", folder)
    assert result.returncode == 0, result.stderr
    return folder


def write_config(folder, **changes):
    path = folder / "cfg.json"
    path.write_text(json.dumps({**TINY, **changes}))
    return path


def local_pretrained_model(folder):
    """A tiny GPT-NeoX and a byte-level BPE tokenizer trained on English, saved like a Hub model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["the quick brown fox jumps over the lazy dog, 0123456789 times"] * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    config = GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, eos_token_id=tokenizer.eos_token_id,
                           bos_token_id=tokenizer.eos_token_id)
    GPTNeoXForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_dataset):
    """A weak from-scratch model (word-level tokenizer), trained for a few seconds."""
    folder = tmp_path_factory.mktemp("models")
    config = write_config(folder, dataset=str(tiny_dataset), output_dir=str(folder / "word"), max_steps=60)
    result = run_script("train.py", "--config", config)
    assert result.returncode == 0, result.stderr
    return folder / "word"


@pytest.fixture(scope="session")
def tiny_bpe_model(tmp_path_factory, tiny_dataset):
    """A weak model fine-tuned from a local BPE "pretrained" model, its tokenizer extended."""
    folder = tmp_path_factory.mktemp("models")
    local_pretrained_model(folder / "base")
    config = write_config(folder, from_scratch=False, model_name=str(folder / "base"), dataset=str(tiny_dataset),
                          output_dir=str(folder / "bpe"), max_steps=30)
    result = run_script("train.py", "--config", config)
    assert result.returncode == 0, result.stderr
    return folder / "bpe"


def require_system(what: str, present: bool) -> None:
    """A test that needs a system package (README: 'System packages'): skipped where it is
    missing, except in CI (.ci/run sets SCORELM_REQUIRE_SYSTEM=1 after installing them all)."""
    if not present:
        if os.environ.get("SCORELM_REQUIRE_SYSTEM") == "1":
            pytest.fail(f"{what} is not installed (see README, System packages)")
        pytest.skip(f"{what} is not installed (see README, System packages)")


CHROMIUM = "/usr/bin/chromium"
# as root on a machine without network: no sandbox, no background connections to Google's hosts
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
AUDIO_DURATIONS = """async () => Promise.all([...document.querySelectorAll('audio')].map(a =>
    a.readyState >= 1 ? a.duration : new Promise(done => {
        a.addEventListener('loadedmetadata', () => done(a.duration));
        a.addEventListener('error', () => done(-1));
        a.load(); })))"""


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's package) driven by Playwright."""
    import shutil
    require_system("chromium", shutil.which("chromium") is not None or os.path.exists(CHROMIUM))
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_in_browser(browser, path, scheme: str = "light", width: int = 1000):
    """Load a page from disk; what a reader would get: the page object, console errors and
    page errors, every request made (the page itself is the only one allowed) and each audio
    element's duration as the browser decoded it."""
    page = browser.new_page(color_scheme=scheme, viewport={"width": width, "height": 900})
    errors, requests = [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    url = "file://" + str(Path(path).resolve())
    page.goto(url)
    durations = page.evaluate(AUDIO_DURATIONS)
    return page, errors, [r for r in requests if r != url], durations
