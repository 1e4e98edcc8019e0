"""Cross-validation by piece: K folds of a corpus, K models each trained without one fold, and
for any piece the model that never saw it.

A cross-validated model folder holds one ordinary model folder per fold (``fold-01`` ...) and a
manifest, ``folds.json``, naming the pieces each one held out (by id and by a hash of the
text the model reads, so that a piece is recognised however its file is named).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scorelm.cli import UserError

MANIFEST = "folds.json"


def text_key(text: str) -> str:
    """A piece's identity as a model reads it: the hash of its words."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:24]


def assign_folds(records: list[dict], folds: int, seed: int) -> list[list[dict]]:
    """Records dealt into `folds` folds, deterministically for a seed: pieces whose text is
    identical form one group and a group is never split (the corpus holds duplicates); groups,
    in an order set by a seeded hash of their text, each go to the fold with fewest pieces so far."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(text_key(record["text"]), []).append(record)
    if not 2 <= folds <= len(groups):
        raise UserError(f"folds must be from 2 to the number of distinct pieces ({len(groups)}), not {folds}")
    ordered = sorted(groups.items(), key=lambda kv: hashlib.sha256(f"{seed}:{kv[0]}".encode()).hexdigest())
    dealt: list[list[dict]] = [[] for _ in range(folds)]
    for _, group in ordered:
        min(dealt, key=len).extend(group)
    return [sorted(fold, key=lambda r: r["id"]) for fold in dealt]


@dataclass
class FoldModel:
    name: str  # its folder, inside the cross-validated folder
    held_out: list[str]  # ids of the pieces it never saw
    held_out_keys: list[str]  # their text_key


@dataclass
class FoldManifest:
    """What folds.json says: how the pieces were dealt and which model held out which."""
    folds: int
    seed: int
    dataset: str
    pieces: int
    models: list[FoldModel] = field(default_factory=list)

    def write(self, folder: Path) -> None:
        from scorelm import files
        files.write_text(folder / MANIFEST, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def read(cls, folder: Path, complete: bool = True) -> "FoldManifest":
        """The manifest in `folder`; with `complete`, every fold's model must be there."""
        path = Path(folder) / MANIFEST
        try:
            data = json.loads(path.read_text())
            manifest = cls(**{k: v for k, v in data.items() if k != "models"},
                           models=[FoldModel(**m) for m in data["models"]])
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise UserError(f"{path} is not a readable fold manifest: {' '.join(str(error).split())[:120]}") from None
        for model in manifest.models if complete else []:
            if not (Path(folder) / model.name / "config.json").is_file():
                raise UserError(f"{folder}/{model.name} named in {MANIFEST} holds no model: train it with "
                                f"train.py --folds {manifest.folds} --resume")
        return manifest

    def models_for(self, text: str) -> tuple[list[str], bool]:
        """The fold model that held out this piece (its name, and True), or every fold model
        (and False) for a piece no fold held out."""
        key = text_key(text)
        for model in self.models:
            if key in model.held_out_keys:
                return [model.name], True
        return [model.name for model in self.models], False


def is_cross_validated(folder: Path) -> bool:
    """A folder of fold models: a manifest, or fold-NN folders without one (an error to report)."""
    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        return True
    if not (folder / "config.json").is_file() and any(folder.glob("fold-*/config.json")):
        raise UserError(f"{folder} holds fold models but no {MANIFEST} saying which pieces each held out; "
                        f"train them again with train.py --folds K")
    return False


def fold_name(index: int) -> str:
    return f"fold-{index + 1:02d}"
