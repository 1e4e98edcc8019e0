"""A model folder: what it says about itself (ModelCard: train.py writes it, everything else
reads it), loading it, and whole or absent: what train.py writes to say a folder is complete,
the checks that loading makes, checkpoints checked before a resume, and the lock that keeps two
runs out of one folder.

A finished model folder's files are moved into place tokenizer first and ``scorelm.json``
last, which records the SHA-256 of the tokenizer it was saved with: a save interrupted at any
point leaves a tokenizer that the folder's scorelm.json does not name (an old model's weights
beside a new run's tokenizer, or the new model beside the old scorelm.json), and loading it is
refused in one line instead of sampling garbage. The weights themselves are not fingerprinted:
a user may re-save them (padding the embeddings, another dtype) and keep the folder whole.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from scorelm.cli import UserError

WEIGHT_PATTERNS = ("model*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin",
                   "pytorch_model.bin.index.json")
LOCK = ".train.lock"


def weight_files(folder: Path) -> list[Path]:
    return sorted({p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern)})


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "tokenizer.model", "added_tokens.json")


def fingerprint(folder: Path) -> dict:
    """What scorelm.json records of the files saved beside it."""
    tokenizer = folder / "tokenizer.json"
    return {"tokenizer_sha256": hashlib.sha256(tokenizer.read_bytes()).hexdigest() if tokenizer.is_file() else None}


def move_order(path: Path) -> int:
    """Where a staged file goes in the swap: the tokenizer first, scorelm.json last."""
    return 0 if path.name in TOKENIZER_FILES else 2 if path.name == "scorelm.json" else 1


def read_json(path: Path, what: str):
    """A JSON file of a model folder or checkpoint, or a one-line error naming it."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path} is damaged ({what}): {' '.join(str(error).split())[:120]}") from None



CARD = "scorelm.json"
# A time or key signature is the model's own when at least this share of its training pieces use it.
KNOWN_SHARE = 0.01


@dataclass
class ModelCard:
    """What a model folder says about itself: what train.py learned of the training pieces
    (scorelm.json) and the training settings that inference reads (train_config.json). Written
    by train.py (save), read by everything else (read); a model saved before a field was
    recorded reads as its default."""
    voices: int = 4  # the usual number of voices of the training pieces
    # per number of voices: each voice's (lowest, highest) MIDI number in the training split
    voice_ranges: dict[int, list] = field(default_factory=dict)
    # per number of voices: the usual layout of parts and staves (staves' voice counts per part), None: a part a voice
    parts: dict[int, list | None] = field(default_factory=dict)
    time_signatures: dict[str, int] = field(default_factory=dict)  # header word ("T:3/4") -> training pieces
    key_signatures: dict[str, int] = field(default_factory=dict)  # header word ("K:-2") -> training pieces
    format_version: int | None = None  # the score language's version the model was trained on
    files: dict = field(default_factory=dict)  # the fingerprint of the files saved beside it (fingerprint())
    # from train_config.json
    dataset: str | None = None
    max_length: int | None = None
    from_scratch: bool = False
    infill_share: float = 0.0  # the share of training pieces shown for infilling (infilling.py; 0: none)

    def to_json(self) -> dict:
        """scorelm.json's content."""
        return {"format_version": self.format_version, "voices": self.voices,
                "voice_ranges": {str(n): [list(r) if r else r for r in ranges] for n, ranges in self.voice_ranges.items()},
                "parts": {str(n): layout for n, layout in self.parts.items()},
                "time_signatures": self.time_signatures, "key_signatures": self.key_signatures, "files": self.files}

    @classmethod
    def from_json(cls, data: dict, train_config: dict | None = None) -> "ModelCard":
        train_config = train_config or {}
        return cls(voices=data.get("voices", 4),
                   voice_ranges={int(n): ranges for n, ranges in (data.get("voice_ranges") or {}).items()},
                   parts={int(n): layout for n, layout in (data.get("parts") or {}).items()},
                   time_signatures=data.get("time_signatures") or {}, key_signatures=data.get("key_signatures") or {},
                   format_version=data.get("format_version"), files=data.get("files") or {},
                   dataset=train_config.get("dataset"), max_length=train_config.get("max_length"),
                   from_scratch=bool(train_config.get("from_scratch")),
                   infill_share=float(train_config.get("infill_share") or 0.0))

    def save(self, folder: Path) -> None:
        """scorelm.json, its fingerprint taken of the files already beside it."""
        self.files = fingerprint(folder)
        from scorelm import files
        files.write_text(folder / CARD, json.dumps(self.to_json(), indent=1) + "\n")

    def ranges(self, voices: int | None = None) -> list | None:
        """Each voice's range for pieces of this many voices (default: the usual number)."""
        return self.voice_ranges.get(voices or self.voices)

    def layout(self, voices: int | None = None) -> tuple | None:
        """The layout of parts and staves the training pieces of this many voices usually state
        (None: no P words, every voice a part of its own, as in the chorales)."""
        layout = self.parts.get(voices or self.voices)
        return tuple(tuple(staves) for staves in layout) if layout else None

    def known_headers(self, kind: str) -> set[str] | None:
        """The header words ("T:3/4", "K:-2") of `kind` ("time_signatures" or "key_signatures")
        the model knows: used by at least KNOWN_SHARE of its training pieces; None for a model
        saved before the count."""
        counts = getattr(self, kind)
        if not counts:
            return None
        total = sum(counts.values())
        return {word for word, count in counts.items() if count >= KNOWN_SHARE * total}


def check_files(folder: Path) -> ModelCard:
    """Before loading: the files a model folder needs, readable, and consistent with the
    fingerprint its scorelm.json recorded. Returns the folder's card (a model saved without one:
    the defaults)."""
    if not (folder / "config.json").is_file():
        raise UserError(f"no trained model in {folder}/; train one with 'accelerate launch train.py' or pass --model")
    read_json(folder / "config.json", "the model's configuration")
    if not weight_files(folder):
        raise UserError(f"{folder}/ has no weights (model.safetensors)")
    for weights in folder.glob("*.safetensors"):
        problem = safetensors_problem(weights)
        if problem:
            raise UserError(f"{weights} is damaged: {problem}")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.json", "tokenizer.model")):
        raise UserError(f"{folder}/ has no tokenizer (tokenizer.json)")
    metadata = read_json(folder / CARD, "written by train.py") if (folder / CARD).is_file() else {}
    read = {name: read_json(folder / name, "written by train.py" if name == "train_config.json" else name)
            for name in ("train_config.json", "tokenizer_config.json", "generation_config.json")
            if (folder / name).is_file()}
    if not isinstance(metadata, dict):
        raise UserError(f"{folder / 'scorelm.json'} is damaged (written by train.py): not a JSON object")
    recorded = metadata.get("files") or {}
    # each fingerprint the folder recorded that this version knows (a later version may record more)
    if any(key in recorded and recorded[key] != value for key, value in fingerprint(folder).items()):
        raise UserError(f"{folder}/ mixes files of two runs (its tokenizer is not the one its scorelm.json was "
                        f"saved with: a save was interrupted, or files were copied in); train it again or restore it")
    trained = read.get("train_config.json")
    return ModelCard.from_json(metadata, trained if isinstance(trained, dict) else None)


def check_loaded(folder: Path, model, tokenizer) -> None:
    """After loading: every token the tokenizer can give has an embedding."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise UserError(f"{folder}/: the tokenizer holds {len(tokenizer)} tokens but the model embeds {rows}; "
                        f"the folder mixes files of two runs")


def load(model_dir, device: str = "cpu"):
    """A trained ScoreLM folder: (model on `device` (lm.pick_device's names) in
    lm.inference_dtype, tokenizer, ModelCard), or a one-line error for a missing, damaged or
    mixed folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a weights bar for a model that loads in a blink
    folder = Path(model_dir)
    card = check_files(folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"cannot load the model in {folder}/: {' '.join(str(error).split())[:150]}") from None
    check_loaded(folder, model, tokenizer)
    from scorelm import lm
    target = lm.pick_device(device)
    if target.type != "cpu":
        model.to(device=target, dtype=lm.inference_dtype(target))
    model.eval()
    lm.attend_written_positions(model)
    # a model trained from scratch knows the positions of its training blocks only
    if card.from_scratch and 0 < (card.max_length or 0) < model.config.max_position_embeddings:
        model.config.max_position_embeddings = card.max_length  # saved before the config said so
    return model, tokenizer, card


def safetensors_problem(path: Path) -> str | None:
    """None for a whole safetensors file; else what it is (empty or truncated, truncated,
    unreadable).
    The header says where every tensor ends: the file must end exactly there."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return "empty or truncated"
            (length,) = struct.unpack("<Q", head)
            if length > size - 8:
                return "truncated"
            header = json.loads(f.read(length))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        return f"unreadable ({' '.join(str(error).split())[:80]})"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    if 8 + length + max(ends, default=0) != size:
        return "truncated"
    return None


def checkpoint_problem(folder: Path, state_file: str) -> str | None:
    """None for a checkpoint that can be resumed: its state readable, its safetensors whole, its
    torch archives (optimizer, scheduler, random states) whole zip files."""
    try:
        state = json.loads((folder / state_file).read_text())
        int(state["step"]), dict(state["config"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return f"{state_file} is damaged"
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".safetensors":
            problem = safetensors_problem(path)
            if problem:
                return f"{path.name} is {problem}"
        elif path.suffix in (".bin", ".pt", ".pkl", ".pth"):
            try:
                with zipfile.ZipFile(path) as archive:
                    if archive.testzip() is not None:
                        return f"{path.name} is damaged"
            except (zipfile.BadZipFile, OSError):
                return f"{path.name} is damaged"
    return None


class OutputLock:
    """One training run per output folder: a lock file naming the process that holds it. A lock
    whose process is gone (a killed run) on this machine is stale and taken over."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK
        self.held = False
        self.made_folder = False

    def acquire(self) -> "OutputLock":
        self.made_folder = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{os.getpid()} {socket.gethostname()}"
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None:
                    raise UserError(f"{self.path.parent} is in use by another training run ({holder}); wait for it, "
                                    f"or remove {self.path} if no run is using it") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(descriptor, "w") as f:
                f.write(me + "\n")
            self.held = True
            return self
        raise UserError(f"cannot take the lock {self.path}")

    def _holder(self) -> str | None:
        """Who holds the lock, or None where it is stale."""
        try:
            pid, host = self.path.read_text().split()
            pid = int(pid)
        except (OSError, ValueError):
            return None  # unreadable: a run killed while writing it
        if host != socket.gethostname():
            return f"process {pid} on {host}"
        if pid == os.getpid():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"process {pid}"

    def release(self) -> None:
        """The lock removed; the folder too where the lock made it and a run failed before
        writing anything in it."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
            if self.made_folder and not any(self.path.parent.iterdir()):
                self.path.parent.rmdir()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
