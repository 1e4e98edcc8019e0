"""IDyOM's benchmark (Pearce 2005): the data sets it reports on that music21's corpus holds, the
published figures, and the protocol's means (pitch information content per note, tied notes
merged, over 10 folds of resampling).

Published figures (Pearce 2005, *The construction and evaluation of statistical models of
melodic structure*): chorale melodies BWV 253-438 (his Dataset 2, 185 melodies, 9,227 events):
2.347 bits per note with pitch alone (long- and short-term models, Table 6.7) and 1.953 with
his best multiple-viewpoint system (Table 7.3); German children's songs, Essen's kinder (Dataset
7, 213 melodies, 8,393 events): 2.106 with pitch alone (Table 6.7). Each is the mean over the
10 folds of the fold's mean information content per event (his section 6.4.1).

IDyOM's pitch-alone figures combine a long-term model (trained on the other folds) with a
short-term model of the melody under prediction (trained on its notes as they come) by an
entropy-weighted arithmetic mean with bias 2 (Pearce's Tables 6.6 and 6.7). ``score`` gives each
model's figure alone and, with the same short-term model and combination (``ppm``), combined:
ScoreLM or the n-gram model in the long-term model's place. The bias is Pearce's, not chosen
on these melodies.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from scorelm import language
from scorelm.analysis import folds, information, ppm

PUBLISHED = {
    "chorales": {"IDyOM, pitch alone (LTM+STM, Table 6.7)": 2.347,
                 "IDyOM, best viewpoint system (Table 7.3)": 1.953},
    "kinder": {"IDyOM, pitch alone (LTM+STM, Table 6.7)": 2.106},
}
KINDER = "essenFolksong/kinder0.abc"
CHORALE_NUMBERS = range(253, 439)


def chorale_melody_sources() -> list[str]:
    """One corpus path per chorale BWV 253 to 438 (music21 holds all 186 numbers; three as both
    MusicXML and kern, of which the MusicXML is taken)."""
    from scorelm import dataset
    chosen: dict[int, str] = {}
    for source in dataset.bach_chorale_sources():
        match = re.fullmatch(r"bach/bwv(\d+)(\.\w+)", source)
        if match and int(match.group(1)) in CHORALE_NUMBERS:
            number = int(match.group(1))
            if number not in chosen or source.endswith(".mxl"):
                chosen[number] = source
    return [chosen[n] for n in sorted(chosen)]


def onset_pitches(text: str) -> list[int]:
    """The MIDI numbers of a melody's notes, a tied note once (IDyOM's events; rests left out)."""
    piece = language.parse(text)[0][0]
    out, tied = [], False
    for _, event in piece.voice_events(0):
        if event.pitch is not None and not event.grace:
            if not tied:
                out.append(language.midi_number(event.pitch))
            tied = event.tie
        else:
            tied = False
    return out


def tune_signature(text: str, length: int = 10) -> tuple[int, ...] | None:
    """The first `length` melodic intervals of a tune (transposition does not change it); None for
    a tune with fewer notes."""
    pitches = onset_pitches(text)
    if len(pitches) <= length:
        return None
    return tuple(b - a for a, b in zip(pitches[:length], pitches[1:length + 1]))


def without_tunes_like(records: list[dict], melodies: list[str], length: int = 10) -> tuple[list[dict], int]:
    """The records whose tune does not begin as any of `melodies` does (the same first `length`
    intervals, in any key): a folk collection with the hymn tunes that Bach's chorales set left
    out. Returns the records kept and how many were left out."""
    signatures = {tune_signature(text, length) for text in melodies} - {None}
    kept = [r for r in records if tune_signature(r["text"], length) not in signatures]
    return kept, len(records) - len(kept)


@dataclass
class FoldResult:
    """Pitch information content of one condition over the folds."""
    per_fold: list[float] = field(default_factory=list)  # each fold's mean per note
    per_melody: list[float] = field(default_factory=list)  # each melody's mean per note
    total_bits: float = 0.0
    notes: int = 0

    def add_fold(self, melodies: list[list[float]]) -> None:
        """One fold's melodies, each as its notes' pitch information content (a tied note once)."""
        bits = [ic for melody in melodies for ic in melody]
        self.per_fold.append(sum(bits) / len(bits))
        self.per_melody.extend(sum(m) / len(m) for m in melodies if m)
        self.total_bits += sum(bits)
        self.notes += len(bits)

    @property
    def mean_of_folds(self) -> float:
        """IDyOM's figure: the mean over folds of each fold's mean per note."""
        return sum(self.per_fold) / len(self.per_fold) if self.per_fold else math.nan

    @property
    def mean_per_note(self) -> float:
        return self.total_bits / self.notes if self.notes else math.nan

    @property
    def mean_of_melodies(self) -> float:
        return sum(self.per_melody) / len(self.per_melody) if self.per_melody else math.nan


# One melody's notes as predicted: (MIDI number, the model's distribution over pitches) per note,
# a tied note once; a fold is its held-out melodies.
Melody = list[tuple[int, dict[int, float]]]

def pitch_predictions(notes: list[information.NoteInformation]) -> Melody:
    """A melody's pitch predictions, a tied note once (its second word's pitch is forced by the
    grammar: the merged note's information is the first's); rests and grace notes left out."""
    return [(n.cpitch, n.pitch_distribution) for n in notes
            if n.pitch is not None and not n.continues_tie and n.duration > 0]


def pitch_alphabet(records: list[dict]) -> list[int]:
    """IDyOM's domain of chromatic pitch: every pitch the data set's melodies hold."""
    return sorted({p for r in records for p in onset_pitches(r["text"])})


def score(folds_predicted: list[list[Melody]], alphabet: list[int] | None = None,
          bias: float = ppm.PEARCE_BIAS) -> FoldResult:
    """Pitch information content over the folds: of the model alone, or (given the data set's
    pitch `alphabet`) of the model combined with IDyOM's short-term model of each melody, as
    IDyOM's pitch-alone figures combine its long- and short-term models (ppm.combine,
    arithmetic, entropy-weighted with `bias`). The combination runs over the pitches either
    model gives probability to."""
    result = FoldResult()
    for melodies in folds_predicted:
        fold = []
        for melody in melodies:
            pitches, distributions = [c for c, _ in melody], [d for _, d in melody]
            if alphabet is not None:
                distributions = ppm.with_short_term(pitches, distributions, alphabet, bias)
            fold.append([information.bits(d.get(c, 0.0)) for c, d in zip(pitches, distributions)])
        result.add_fold(fold)
    return result


def _predict(records: list[dict], tokenizer, predictor, vocabulary) -> list[Melody]:
    return [pitch_predictions(information.note_information(language.parse(r["text"])[0][0], tokenizer, predictor,
                                                           vocabulary, keep_distributions=True)) for r in records]


def cross_validated(cv_folder, records: list[dict]) -> list[list[Melody]]:
    """Each fold's held-out melodies predicted by the fold model that never saw them."""
    from scorelm.analysis.report import Models
    models = Models.open(cv_folder)
    by_key = {folds.text_key(r["text"]): r for r in records}
    predicted = []
    for fold in models.manifest.models:
        _, tokenizer, _, vocabulary, predictor = models.load(fold.name)
        predicted.append(_predict([by_key[key] for key in fold.held_out_keys], tokenizer, predictor, vocabulary))
    return predicted


def one_model(folder, records: list[dict], dealt: list[list[dict]]) -> list[list[Melody]]:
    """A model that saw none of the melodies (the folk base alone), its predictions grouped by the
    same folds as the cross-validated models' so that the figures compare."""
    from scorelm.analysis.report import Models
    _, tokenizer, _, vocabulary, predictor = Models.open(folder).load(None)
    return [_predict(held_out, tokenizer, predictor, vocabulary) for held_out in dealt]


def ngram_cross_validated(records: list[dict], dealt: list[list[dict]],
                          orders=(2, 3, 4, 5, 6, 8)) -> list[list[Melody]]:
    """The project's Kneser-Ney n-gram model (evaluation.KneserNey) over the same folds: a word
    tokenizer over the corpus' alphabet, the order chosen within each fold's training pieces
    (the last tenth of them held out for it), never on the fold under test."""
    from scorelm import lm
    from scorelm.decoding import Vocabulary
    from scorelm.evaluation import KneserNey, token_stream
    alphabet = " ".join(sorted({w for r in records for w in r["text"].split()}))
    tokenizer = lm.train_word_tokenizer([r["text"] for r in records] + [alphabet])
    vocabulary = Vocabulary.from_tokenizer(tokenizer)
    size = len(tokenizer)
    predicted = []
    for index, held_out in enumerate(dealt):
        training = [r["text"] for j, fold in enumerate(dealt) if j != index for r in fold]
        cut = len(training) - max(1, len(training) // 10)
        inner, check = token_stream(tokenizer, training[:cut]), token_stream(tokenizer, training[cut:])
        order = min(orders, key=lambda n: KneserNey(n, size).fit(inner).nll_bits(check))
        predictor = information.ngram_predictor(KneserNey(order, size).fit(token_stream(tokenizer, training)), size)
        predicted.append(_predict(held_out, tokenizer, predictor, vocabulary))
    return predicted
