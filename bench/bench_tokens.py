"""Tokens per chorale: ScoreLM's language against the original prototype's chordified format
(re-implemented here for measurement only), both under a word-level tokenizer trained on the
training split, plus each format's vocabulary and its out-of-vocabulary rate on the test split.

The prototype chordified each chorale: one token per vertical sonority (all sounding pitches
and the time until the next change), measures separated by "|", no voices, key, meter or
fermatas. It is shorter, but it has lost the voices and needs a far larger vocabulary.

    python bench/bench_tokens.py [--dataset dataset]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scorelm import dataset, language, lm, roundtrip  # noqa: E402
from scorelm.evaluation import sonorities  # noqa: E402


def chordified(text: str) -> str:
    """The prototype's format: a token per sonority, duration until the next onset."""
    piece = language.parse(text)[0][0]
    words, bar_starts, start = [], set(), 0
    for measure in piece.measures:
        bar_starts.add(start)
        start += measure.length
    slices = list(sonorities([piece.voice_events(v) for v in range(piece.num_voices)]))
    ends = [onset for onset, _ in slices[1:]] + [start]
    for (onset, sounding), end in zip(slices, ends):
        if onset in bar_starts:
            words.append("|")
        pitches = ".".join(sorted({p for p in sounding if p}, key=language.midi_number)) or "rest"
        words.append(f"{pitches}_{language.format_duration(end - onset)}")
    return " ".join(words)


def measure(texts_by_split: dict[str, list[str]]) -> dict:
    train_vocabulary = {w for t in texts_by_split["train"] for w in t.split()}
    lengths = [len(t.split()) for t in texts_by_split["train"] + texts_by_split["test"]]
    test_words = [w for t in texts_by_split["test"] for w in t.split()]
    return {"median": statistics.median(lengths), "mean": statistics.mean(lengths), "vocabulary": len(train_vocabulary),
            "test_oov": sum(w not in train_vocabulary for w in test_words) / max(1, len(test_words))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="dataset")
    args = parser.parse_args()
    if not (Path(args.dataset) / "train.jsonl").is_file():
        sys.exit(f"no dataset in {args.dataset}/: run 'python generate_data.py' first (or pass --dataset)")
    splits = {name: [r["text"] for r in dataset.read_jsonl(Path(args.dataset) / f"{name}.jsonl")
                     if r["transposition"] == "P1"] for name in ("train", "test")}
    ours = measure(splits)
    theirs = measure({name: [chordified(t) for t in texts] for name, texts in splits.items()})
    print(f"{'format':22s} {'median tok':>10s} {'mean tok':>9s} {'vocabulary':>10s} {'test OOV':>9s}")
    for name, m in (("ScoreLM (4 voices)", ours), ("chordified prototype", theirs)):
        print(f"{name:22s} {m['median']:10.0f} {m['mean']:9.1f} {m['vocabulary']:10d} {m['test_oov']:9.2%}")
    print(f"tokens per chorale, ScoreLM / chordified = {ours['mean'] / theirs['mean']:.2f}; "
          f"vocabulary ratio = {ours['vocabulary'] / theirs['vocabulary']:.2f}")
    print()
    chorales = [t for texts in splits.values() for t in texts]
    print(f"{'pieces':40s} {'pieces':>6s} {'words':>7s} {'notes':>7s} {'words/note':>10s}")
    print(per_note("Bach chorales (this dataset)", chorales))
    for name, sources in OTHER_MUSIC.items():
        print(per_note(name, [language.encode_score(score) for source in sources
                              for score in roundtrip.scores_of(source)]))


# Beside the chorales: piano music and string quartets from music21's corpus (ScoreLM's tokens are
# its words: one word-level token each; a note is a note, rest or chord note, lm.count_notes)
OTHER_MUSIC = {
    "piano (Joplin, Chopin, C. Schumann x4)": ["joplin/maple_leaf_rag.mxl", "chopin/mazurka06-2.krn",
                                              "schumann_clara/polonaise_op1n1.mxl", "schumann_clara/polonaise_op1n2.mxl",
                                              "schumann_clara/polonaise_op1n3.mxl", "schumann_clara/polonaise_op1n4.mxl"],
    "string quartets (Haydn, Mozart, Beethoven)": ["haydn/opus74no1/movement4.mxl", "mozart/k155/movement1.mxl",
                                                   "mozart/k458/movement2.mxl", "beethoven/opus18no1/movement3.krn"],
}


def per_note(name: str, texts: list[str]) -> str:
    words = sum(len(t.split()) for t in texts)
    notes = lm.count_notes(texts)
    return f"{name:40s} {len(texts):6d} {words:7d} {notes:7d} {words / notes:10.2f}"


if __name__ == "__main__":
    main()
