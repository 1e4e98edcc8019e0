"""The model's vocabulary as the decoder sees it: every token id that is one whole word of the
score language, its parsed Token, and numpy arrays of what the grammar and the rules ask of each
id (kind, duration in ticks, pitch, tie), so that one step's checks are array operations."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import lcm

import numpy as np

from scorelm import language
from scorelm.language import EVENT_KINDS, Kind, Token

# The decoder counts time in ticks, the finest subdivision its vocabulary's durations need: the
# tables it builds grow with ticks per measure, so durations that need a finer tick than 1/384 of
# a quarter (binary values to 128ths, triplets; not quintuplets, septuplets, 17-tuplets) are left
# out of constrained decoding: never chosen, listed in Vocabulary.unplayable. A keyboard corpus
# has a few (Schumann's 17-tuplet runs); a chorale model none.
TICKS_PER_QUARTER = 384


@dataclass
class Vocabulary:
    """Every token id that is one whole symbol of the language, with its parsed Token. Other
    ids (BPE pieces of a symbol, special tokens) are never chosen under constraints."""
    size: int
    symbol: dict[int, Token]  # id -> Token
    ids_of: dict[str, int]  # symbol text -> id
    kind: np.ndarray  # per id: index into KINDS, -1 for non-symbols
    ticks: np.ndarray  # NOTE/REST duration in ticks, else 0 (and 0 for grace notes)
    pitch: np.ndarray  # NOTE/CHORD: index into pitches, else -1
    midi: np.ndarray  # NOTE/CHORD: MIDI number, else -1
    rank: np.ndarray  # NOTE/CHORD: the pitch's place in a chord's order (language.pitch_rank), else -1
    tie: np.ndarray  # NOTE/CHORD: tied onward
    grace: np.ndarray  # NOTE: a grace note
    pitches: list[str]
    tick: Fraction  # the duration of one tick
    structural: list[tuple[int, Token]]  # BAR, END, KEY, TIME, LENGTH, VOICE tokens

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "Vocabulary":
        size = len(tokenizer)
        symbol: dict[int, Token] = {}
        unplayable: list[str] = []
        special = set(tokenizer.all_special_ids)
        for token_id in range(size):
            if token_id in special:
                continue
            text = tokenizer.decode([token_id])
            if not text.startswith(" ") or len(text.split()) != 1:
                continue  # a piece of a symbol, not a whole one
            token = language.parse_token(text.strip())
            if token is None:
                continue
            if token.duration is not None and TICKS_PER_QUARTER % token.duration.denominator:
                unplayable.append(token.text)  # a 5-, 7- or 17-tuplet value: see TICKS_PER_QUARTER
                continue
            symbol.setdefault(token_id, token)
        durations = {t.duration for t in symbol.values() if t.duration is not None}
        tick = Fraction(1, lcm(*(d.denominator for d in durations))) if durations else Fraction(1)
        kind = np.full(size, -1, dtype=np.int8)
        ticks = np.zeros(size, dtype=np.int64)
        pitch = np.full(size, -1, dtype=np.int32)
        midi = np.full(size, -1, dtype=np.int32)
        rank = np.full(size, -1, dtype=np.int64)
        tie = np.zeros(size, dtype=bool)
        grace = np.zeros(size, dtype=bool)
        pitches = sorted({t.pitch for t in symbol.values() if t.pitch})
        pitch_index = {p: i for i, p in enumerate(pitches)}
        structural = []
        for token_id, token in symbol.items():
            kind[token_id] = KINDS.index(token.kind)
            if token.kind in EVENT_KINDS:
                ticks[token_id] = int(token.duration / tick)
                if token.pitch:
                    pitch[token_id] = pitch_index[token.pitch]
                    midi[token_id] = language.midi_number(token.pitch)
                    rank[token_id] = pitch_order(token.pitch)
                    tie[token_id] = token.tie
                    grace[token_id] = token.grace
            else:
                structural.append((token_id, token))
        vocabulary = cls(size, symbol, {t.text: i for i, t in symbol.items()}, kind, ticks, pitch, midi, rank, tie,
                         grace, pitches, tick, structural)
        vocabulary.unplayable = sorted(set(unplayable))
        return vocabulary

    def __post_init__(self):
        self.unplayable: list[str] = []  # words of durations finer than TICKS_PER_QUARTER allows
        self.structural_by_kind = {kind: [(i, t) for i, t in self.structural if t.kind is kind] for kind in Kind}
        # the pitches a chord may add under its first note (any tie)
        self.chord_pitches = {t.pitch for t in self.symbol.values() if t.kind is Kind.CHORD}
        self.end_id = self.ids_of.get(language.END, -1)  # the piece's close, ||
        # tables derived from the vocabulary (decoding tables, rule tables), built once each by
        # the modules that own them (tables.decoding_tables, voice_leading.rule_tables)
        self.derived: dict = {}


KINDS = list(Kind)  # a kind as a small number: Vocabulary.kind holds its index here
NOTE, REST, CHORD = KINDS.index(Kind.NOTE), KINDS.index(Kind.REST), KINDS.index(Kind.CHORD)


def pitch_order(pitch: str) -> int:
    """language.pitch_rank as one comparable number."""
    midi, step = language.pitch_rank(pitch)
    return midi * 1000 + step
