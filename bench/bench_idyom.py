"""IDyOM's benchmark, its protocol followed: 10-fold cross-validation by melody on the chorale
melodies BWV 253-438 and on the German children's songs (Essen's kinder0), mean pitch
information content per note (a tied note once), for ScoreLM from scratch on the other nine
folds, ScoreLM fine-tuned from a folk-melody base that never saw a melody under test, that base
alone (it saw none of the melodies: no folds needed, its means taken over the same folds), and
the project's Kneser-Ney n-gram model, each alone and combined with IDyOM's short-term model as
IDyOM's pitch-alone figures combine theirs (scorelm.analysis.idyom), printed beside IDyOM's
published figures. --json keys: each condition, and CONDITION+stm for its combination.

    python bench/bench_idyom.py                            # everything (see README for the time on 2 cores)
    python bench/bench_idyom.py --data chorales --conditions scratch,ngram
    python bench/bench_idyom.py --json idyom.json --work runs/idyom   # models kept in --work; a rerun resumes
    python bench/bench_idyom.py --choose --work runs/idyom            # how the fine-tuning recipe was chosen

--choose trains each candidate recipe (RECIPES) once per data set on melodies inside the first
fold's training folds (eight folds' melodies, transposed as the bench's are) and prints its
pitch information content on the ninth (the second fold: it is never the first fold's test
melodies); the recipe in configs/melody_finetune.json is the one it chose, nothing is chosen on
the folds under test.

Everything it trains goes to --work (default: a temporary folder, removed at the end).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _scripts import script  # noqa: E402
from scorelm import dataset  # noqa: E402
from scorelm.analysis import folds, idyom  # noqa: E402

CONDITIONS = ("scratch", "pretrained", "base", "ngram")
# --choose's candidates: (config, learning rate, epochs); from scratch once for reference
RECIPES = [("melody_fold.json", 2e-3, 12)] + [("melody_finetune.json", lr, epochs) for lr, epochs in (
    (5e-4, 4), (1e-3, 8), (5e-4, 12), (2e-3, 12), (2e-3, 20), (3e-3, 12), (4e-3, 20))]
DATA = ("chorales", "kinder")


def records_of(folder: Path) -> list[dict]:
    """The original pieces of a dataset folder (no transposed copies)."""
    return [r for name in dataset.SPLITS for r in dataset.read_jsonl(folder / f"{name}.jsonl")
            if r["transposition"] == "P1"]


def build_data(work: Path, name: str) -> Path:
    folder = work / name
    if not (folder / "summary.json").is_file():
        from music21 import corpus
        sources = idyom.chorale_melody_sources() if name == "chorales" else [idyom.KINDER]
        script("generate_data.py", "--melody", "--transpose", "--output", folder, "--overwrite",
               "--input", *[corpus.getWork(s) for s in sources])
    return folder


def build_base(work: Path, targets: list[Path]) -> Path:
    """The folk-melody base: Essen's collections but kinder0, without the tunes that begin as a
    target melody does; trained once, kept in --work."""
    base = work / "base"
    if (base / "metrics.json").is_file():
        return base
    essen, data = work / "essen", work / "base-data"
    if not (essen / "summary.json").is_file():
        script("generate_data.py", "--melody", "--corpus", "essenFolksong", "--split", "95/5/0", "--output", essen,
               "--overwrite")
    if not (data / "train.jsonl").is_file():
        melodies = [r["text"] for target in targets for r in records_of(target)]
        splits = {}
        for split in dataset.SPLITS:
            records = [r for r in dataset.read_jsonl(essen / f"{split}.jsonl") if "kinder0" not in r["source"]]
            splits[split], left_out = idyom.without_tunes_like(records, melodies)
            print(f"folk base, {split}: {len(splits[split])} tunes, {left_out} left out as beginning like a "
                  f"melody under test", file=sys.stderr)
        data.mkdir(parents=True, exist_ok=True)
        for split, records in splits.items():
            dataset.write_jsonl_atomic(data / f"{split}.jsonl", records)
    script("train.py", "--config", ROOT / "configs/melody_base.json", "--dataset", data, "--output_dir", base,
           *(["--resume"] if (base / "checkpoints").is_dir() else []))
    return base


def train_folds(config: str, data: Path, output: Path, *extra) -> Path:
    if not (output / "cross_validation.json").is_file():
        resume = ["--resume"] if (output / folds.MANIFEST).is_file() else []
        script("train.py", "--config", ROOT / "configs" / config, "--dataset", data, "--output_dir", output,
               "--folds", 10, *extra, *resume)
    return output


def choose(work: Path, name: str, folder: Path, base: Path) -> list[str]:
    """Each RECIPES candidate trained on the first fold's training melodies but one fold, judged
    on that fold (pitch information content alone and with the short-term model)."""
    records = records_of(folder)
    dealt = folds.assign_folds(records, 10, 42)
    inner_train = [r for index, fold in enumerate(dealt) if index not in (0, 1) for r in fold]
    data = work / f"choose-{name}" / "data"
    if not (data / "train.jsonl").is_file():
        data.mkdir(parents=True, exist_ok=True)
        dataset.write_jsonl_atomic(data / "validation.jsonl", dealt[1])
        dataset.write_jsonl_atomic(data / "test.jsonl", [])
        dataset.write_jsonl_atomic(data / "train.jsonl", inner_train + dataset.transposed_copies(inner_train))
    alphabet = idyom.pitch_alphabet(records)
    lines = []
    for config, lr, epochs in RECIPES:
        output = work / f"choose-{name}" / f"{Path(config).stem}-{lr:g}-{epochs}"
        if not (output / "metrics.json").is_file():
            extra = ["--model_name", base] if config == "melody_finetune.json" else []
            script("train.py", "--config", ROOT / "configs" / config, "--dataset", data, "--output_dir", output,
                   "--lr", lr, "--epochs", epochs, "--folds", 0, "--overwrite", *extra)
        predicted = idyom.one_model(output, records, [dealt[1]])
        lines.append(f"{name:9s} {Path(config).stem:16s} lr {lr:<7g} epochs {epochs:3d}"
                     f"{idyom.score(predicted).mean_of_folds:8.3f}{idyom.score(predicted, alphabet).mean_of_folds:8.3f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data", default=",".join(DATA), help="chorales, kinder or both (default)")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="of " + ", ".join(CONDITIONS))
    parser.add_argument("--work", type=Path, help="where data and models go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--choose", action="store_true",
                        help="compare the fine-tuning recipes on melodies inside the first fold's training folds")
    args = parser.parse_args()
    data_sets = args.data.split(",")
    conditions = args.conditions.split(",")
    unknown = sorted(set(data_sets) - set(DATA)) + sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    temporary = None if args.work else tempfile.TemporaryDirectory(prefix="bench-idyom-")
    work = args.work or Path(temporary.name)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    targets = {name: build_data(work, name) for name in data_sets}
    base = None
    if args.choose or "pretrained" in conditions or "base" in conditions:
        base = build_base(work, [build_data(work, name) for name in DATA])  # never sees either set
    if args.choose:
        lines = [line for name, folder in targets.items() for line in choose(work, name, folder, base)]
        print("pitch information content, bits per note, of the second fold's melodies (inside the first fold's "
              "training folds)")
        print(f"{'data':9s} {'recipe':37s}{'alone':>7s}{'+ STM':>8s}")
        print("\n".join(lines))
        return 0
    figures, lines = {}, []
    for name, folder in targets.items():
        records = records_of(folder)
        figures[name] = {}
        for condition in conditions:
            clock = time.perf_counter()
            dealt = folds.assign_folds(records, 10, 42)  # train.py's folds: the same seed, the same deal
            if condition == "ngram":
                predicted = idyom.ngram_cross_validated(records, dealt)
            elif condition == "base":  # the folk base alone: it saw none of the melodies
                predicted = idyom.one_model(base, records, dealt)
            else:
                extra = ["--model_name", base] if condition == "pretrained" else []
                config = "melody_fold.json" if condition == "scratch" else "melody_finetune.json"
                predicted = idyom.cross_validated(train_folds(config, folder, work / f"{name}-{condition}", *extra),
                                                  records)
            label = {"ngram": "n-gram (Kneser-Ney)", "base": "ScoreLM folk base alone"}.get(condition,
                                                                                       "ScoreLM " + condition)
            seconds = time.perf_counter() - clock
            alphabet = idyom.pitch_alphabet(records)
            for key, row, result in ((condition, label, idyom.score(predicted)),
                                     (f"{condition}+stm", "  + short-term model", idyom.score(predicted, alphabet))):
                figures[name][key] = result.mean_of_folds
                figures[name][f"{key}_per_note"] = result.mean_per_note
                figures[name][f"{key}_per_melody"] = result.mean_of_melodies
                figures[name]["notes"] = result.notes
                figures[name]["melodies"] = len(records)
                lines.append(f"{name:9s} {row:28s}"
                             f"{result.mean_of_folds:7.3f} {result.mean_per_note:9.3f} {result.mean_of_melodies:10.3f}"
                             f"   {result.notes} notes" + (f", {seconds:.0f} s" if key == condition else ""))
        for label, value in idyom.PUBLISHED[name].items():
            lines.append(f"{name:9s} {label:44s}{value:7.3f}   (published, {'185' if name == 'chorales' else '213'} "
                         f"melodies)")
    print("pitch information content, bits per note, 10-fold cross-validation by melody")
    print(f"{'data':9s} {'model':28s}{'folds':>7s} {'per note':>9s} {'per melody':>10s}")
    print("\n".join(lines))
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
