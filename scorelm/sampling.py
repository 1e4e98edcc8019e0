"""Constrained decoding: a transformers LogitsProcessor that lets the model write only text the
score language's grammar accepts, so every sample is a valid score.

The grammar itself (what may follow what, how measures fill) is language.Grammar: this module
asks it about one representative token per kind, duration and pitch, then adds what only a
decoder needs: never painting itself into a corner (a remainder the voice's rests and notes
cannot fill, a tie no note can continue, a token budget too small to close the piece), voice
ranges, forced tokens (harmonization), and a measure count. It rules out nothing else: every
word of every chorale in the corpus is allowed where it stands (tested).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from fractions import Fraction
from math import lcm

import numpy as np

from scorelm import language, voice_leading
from scorelm.language import EVENT_KINDS, FOLLOWS, HEADER_KINDS, Grammar, Kind, Token

UNREACHABLE = 10 ** 6
# The decoder counts time in ticks, the finest subdivision its vocabulary's durations need: the
# tables it builds grow with ticks per measure, so durations that need a finer tick than 1/384 of
# a quarter (binary values to 128ths, triplets; not quintuplets, septuplets, 17-tuplets) are left
# out of constrained decoding: never chosen, listed in Vocabulary.unplayable. A keyboard corpus
# has a few (Schumann's 17-tuplet runs); a chorale model none.
TICKS_PER_QUARTER = 384
# after these, a TIME or LENGTH may come: which ties are open then decides which lengths may
LENGTH_MAY_FOLLOW = tuple(kind for kind, after in FOLLOWS.items() if after & {Kind.TIME, Kind.LENGTH})
_UNSET = object()


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
                    rank[token_id] = _rank(token.pitch)
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
        self._tables: dict = {}
        self._rule_tables: dict = {}

    def rule_tables(self, num_voices: int, mode: str, enabled) -> voice_leading.RuleTables:
        key = (num_voices, mode, tuple(enabled))
        if key not in self._rule_tables:
            self._rule_tables[key] = voice_leading.RuleTables(self, num_voices, mode, tuple(enabled))
        return self._rule_tables[key]

    def tables(self, num_voices: int, voice_ranges=None) -> "DecodingTables":
        """The decoding tables (and their mask cache) for these voices, built once."""
        key = (num_voices, repr(voice_ranges))
        if key not in self._tables:
            self._tables[key] = DecodingTables(self, num_voices, voice_ranges)
        return self._tables[key]


KINDS = list(Kind)
_NOTE, _REST, _CHORD = KINDS.index(Kind.NOTE), KINDS.index(Kind.REST), KINDS.index(Kind.CHORD)


def _rank(pitch: str) -> int:
    """language.pitch_rank as one comparable number."""
    midi, step = language.pitch_rank(pitch)
    return midi * 1000 + step


class DecodingTables:
    """What the constraint looks up on every step, computed once per vocabulary and ranges."""

    def __init__(self, vocabulary: Vocabulary, num_voices: int, voice_ranges=None):
        v = vocabulary
        self.num_voices = num_voices
        longest = max([int(tok.duration / v.tick) for _, tok in v.structural
                       if tok.kind in (Kind.TIME, Kind.LENGTH)] + [int(v.ticks.max()), 1])
        self.in_range = {}
        for number in range(1, num_voices + 1):
            mask = (v.kind == _NOTE) | (v.kind == _CHORD)
            if voice_ranges and number <= len(voice_ranges) and voice_ranges[number - 1]:
                low, high = voice_ranges[number - 1]
                mask = mask & (v.midi >= low) & (v.midi <= high)
            self.in_range[number] = mask
        # min_fill[voice, r]: fewest tokens that fill r ticks of the voice exactly (UNREACHABLE if
        # none can), with rests and untied notes in its range. Notes count, not only rests: the
        # corpus has no rest shorter than an eighth, and a rests-only table would forbid every
        # sixteenth note that leaves a sixteenth of the measure. Row 0 (before V1) fills nothing.
        self.min_fill = np.full((num_voices + 1, longest + 1), UNREACHABLE, dtype=np.int64)
        self.min_fill[:, 0] = 0
        for number in range(1, num_voices + 1):
            fillers = (v.kind == _REST) | (self.in_range[number] & ~v.tie & (v.kind == _NOTE) & (v.ticks > 0))
            durations = sorted({int(t) for t in v.ticks[fillers]})
            row = [0] + [UNREACHABLE] * longest
            for r in range(1, longest + 1):
                best = min((row[r - t] for t in durations if t <= r), default=UNREACHABLE)
                row[r] = min(UNREACHABLE, best + 1)
            self.min_fill[number] = row
        self._min_fill = self.min_fill.tolist()  # for single lookups, several per decoding step
        # continuable[voice, p, room]: a note of pitch p fits `room` ticks of the voice with a
        # remainder the voice can fill
        fillable = self.fillable = self.min_fill < UNREACHABLE  # [voice, ticks]
        self.continuable = np.zeros((num_voices + 1, max(1, len(v.pitches)), longest + 1), dtype=bool)
        for token_id in np.flatnonzero((v.kind == _NOTE) & ~v.grace):
            t = int(v.ticks[token_id])
            rooms = np.arange(t, longest + 1)
            self.continuable[:, v.pitch[token_id], rooms] |= fillable[:, rooms - t]
        self.nothing = np.zeros(v.size, dtype=bool)
        self.cache: dict[tuple, tuple] = {}  # grammar state -> (allowed ids, token budget each needs)

    def fill(self, ticks, voice: int):
        """min_fill of the voice for any ticks (an int or an array), UNREACHABLE outside the table."""
        if isinstance(ticks, int):  # numpy's overhead on one number would dominate a decoding step
            row = self._min_fill[voice]
            return row[ticks] if 0 <= ticks < len(row) else UNREACHABLE
        ticks = np.asarray(ticks)
        out = np.full(ticks.shape, UNREACHABLE, dtype=np.int64)
        inside = (ticks >= 0) & (ticks < self.min_fill.shape[1])
        out[inside] = self.min_fill[voice, ticks[inside]]
        return out

    def fillable_by_all(self, ticks: int) -> bool:
        """Every voice can fill a measure of this many ticks."""
        return all(self.fill(ticks, number) < UNREACHABLE for number in range(1, self.num_voices + 1))

    def closing_cost(self, voice: int, remaining_ticks, measure_ticks: int):
        """Fewest tokens to finish the measure and the piece from a state in `voice` with
        `remaining_ticks` (an int or an array) left in it: its rests or notes, the missing voices
        (marker and filling), ||, end."""
        later = sum(1 + self.fill(measure_ticks, number) for number in range(voice + 1, self.num_voices + 1))
        return self.fill(remaining_ticks, voice) + later + 2


class ScoreConstraint:
    """Grammar state of one sequence, and the mask of token ids that may come next."""

    def __init__(self, vocabulary: Vocabulary, tables: DecodingTables, measures: int | None = None,
                 forced_measures: list[list[str]] | None = None, max_tokens: int | None = None,
                 rules: voice_leading.RuleTables | None = None, parts: tuple | None = None):
        self.v = vocabulary
        self.tables = tables
        self._fill = tables.fill
        self._closing_cost = tables.closing_cost
        self._bar_length: object = _UNSET  # the bar length _bar_ticks and _far_budget were derived from
        self._bar_ticks = self._far_budget = 0
        self.num_voices = tables.num_voices  # the tables were built for these voices
        self.grammar = Grammar(self.num_voices)
        self.measures = len(forced_measures) if forced_measures else measures
        self.forced_measures = forced_measures
        self.forced: list[int] = []  # ids that must come next, in order
        self.max_tokens = max_tokens
        self.generated = 0
        self.finished = False
        # the voice-leading rules narrow (hard ones) or weigh (soft ones) what the grammar allows
        self.music = voice_leading.VoiceLeading(rules) \
            if rules is not None and rules.mode != "off" and rules.enabled else None
        if self.music is not None:
            self.music.free = not forced_measures  # a given melody decides its own mode's close
        self.penalty: np.ndarray | None = None  # soft rules: nats off each id's logit this step
        # particle sampling weighs each step by the mass the rules leave of what the grammar allows:
        # with weigh_steps, allowed() keeps the grammar's own mask (before the rules)
        # and counts the rules hard mode had to give up on this step
        self.weigh_steps = False
        self.grammar_mask: np.ndarray | None = None
        self.rules_given_up = 0
        # the parts and staves a new piece states (the training data's usual layout; None: no P
        # words, every voice a part of its own): the model chooses the voices' notes, not their layout
        self.parts = tuple(parts) if parts else ()

    # -- following the text
    def advance(self, token_id: int) -> None:
        self.generated += 1
        if self.finished:
            return
        if self.forced:
            self.forced.pop(0)
        token = self.v.symbol.get(token_id)
        if token is None or self.grammar.last is Kind.END:
            self.finished = True
            return
        self.grammar.advance(token)
        if self.music is not None:
            self.music.advance(token, token_id)
        if self.forced_measures and not self.forced and token.kind in (Kind.NOTE, Kind.REST) \
                and self._complete_measures() > self.grammar.measure_index:
            self._queue_next_measure()

    def start(self, prompt_ids: list[int]) -> None:
        """Follow the prompt (its validity was checked before); queue forced tokens."""
        for token_id in prompt_ids:
            token = self.v.symbol.get(token_id)
            if token is not None:
                self.grammar.advance(token)
                if self.music is not None:
                    self.music.advance(token, token_id)
        if self.grammar.parts and self.grammar.last is not Kind.PARTS:
            self.parts = tuple(self.grammar.parts)  # the prompt stated its own layout
        if self.forced_measures and (self.grammar.last is None or
                                     self._complete_measures() > self.grammar.measure_index):
            self._queue_next_measure()  # the first measure, or the one after a prompt of whole measures

    def _queue_next_measure(self) -> None:
        index = self.grammar.measure_index + 1
        if index < len(self.forced_measures):
            self.forced = [self.v.ids_of[word] for word in self.forced_measures[index]]

    # -- the mask
    def allowed(self) -> np.ndarray:
        """The ids that may come next. Masks are cached by grammar state and shared between
        rows and steps: treat the array as read-only."""
        v, g = self.v, self.grammar
        self.penalty = None
        self.rules_given_up = 0
        if self.finished:
            return self.tables.nothing
        if self.forced:  # a given melody's note: not weighed (its own probability would favour the
            # particles whose lower voices have written more notes by then, not the better ones)
            self.grammar_mask = self._forced_mask()
            return self.grammar_mask
        if g.bar_length is not self._bar_length:  # a new time signature (rare): recompute what it decides
            self._bar_length = g.bar_length
            self._bar_ticks = int(g.bar_length / v.tick) if g.bar_length else 0
            self._far_budget = 4 * self._closing_cost(0, 0, self._bar_ticks) + 16
        enough_measures = self.measures is not None and self._complete_measures() >= self.measures
        ties = tuple(sorted(g.open_ties.items())) if g.open_ties and g.last in LENGTH_MAY_FOLLOW else bool(g.open_ties)
        state = (g.last, g.measure_index == 0, g.key is None, g.bar_length, g.measure_length, g.voice, g.filled,
                 g.num_voices, g.open_ties.get(g.voice), ties, self.measures is not None, enough_measures,
                 self._last_measure(), g.pending, g.chord_low if g.last in (Kind.NOTE, Kind.CHORD) else None,
                 g.optional, (tuple(g.parts), self.parts) if g.in_first_measure else None,
                 # an optional voice with a tie open must appear: which voices may be skipped
                 frozenset(v for v in g.open_ties if v in g.optional) if g.optional else None)
        entry = self.tables.cache.get(state)
        if entry is None:
            entry = self.tables.cache[state] = self._compute_mask(self._bar_ticks, enough_measures)
        mask, need = entry
        budget = None if self.max_tokens is None else self.max_tokens - self.generated
        if budget is not None and budget <= self._far_budget:  # near the end: only what still fits
            mask = mask & (need <= budget)
            if not mask.any():
                mask = self.tables.nothing
        if mask is self.tables.nothing:
            self.finished = True
        self.grammar_mask = mask
        if mask is not self.tables.nothing and self.music is not None and g.last in (Kind.VOICE,) + EVENT_KINDS:
            fillable = self.tables.fillable[max(g.voice, 0)]
            given_up = sum(self.music.dropped.values())
            mask, self.penalty = self.music.choose(mask, int(g.measure_length / v.tick), self._last_measure(), fillable)
            self.rules_given_up = sum(self.music.dropped.values()) - given_up
        return mask

    def _forced_mask(self) -> np.ndarray:
        mask = np.zeros(self.v.size, dtype=bool)
        mask[self.forced[0]] = True
        return mask

    def copy(self) -> "ScoreConstraint":
        """An independent copy of this sequence's state (particle sampling duplicates sequences);
        the vocabulary and the tables stay shared."""
        shared = {id(self.v): self.v, id(self.tables): self.tables}
        if self.music is not None:
            shared[id(self.music.t)] = self.music.t
        return copy.deepcopy(self, shared)

    def _compute_mask(self, bar_ticks: int, enough_measures: bool) -> tuple[np.ndarray, np.ndarray]:
        """The ids allowed in this grammar state, and for each the token budget it needs (the
        fewest tokens that finish the piece after it, plus itself), applied near the budget's end."""
        v, g = self.v, self.grammar
        mask = np.zeros(v.size, dtype=bool)
        need = np.zeros(v.size, dtype=np.int64)
        measure_ticks = int(g.measure_length / v.tick) if g.measure_length else 0
        candidates = [pair for kind in FOLLOWS[g.last] for pair in v.structural_by_kind[kind]]
        stating_parts = g.in_first_measure and g.last in (Kind.TIME, Kind.PARTS)
        for token_id, token in candidates:
            if g.violation(token) is not None:
                continue
            if stating_parts and token.kind is Kind.PARTS and (
                    len(g.parts) >= len(self.parts) or token.staves != self.parts[len(g.parts)]):
                continue
            if stating_parts and token.kind in (Kind.LENGTH, Kind.VOICE) and len(g.parts) < len(self.parts):
                continue
            if token.kind is Kind.BAR and g.last is not None and g.last is not Kind.END:
                if enough_measures:
                    continue
                need[token_id] = 1 + self._closing_cost(0, 0, bar_ticks)  # room for another whole measure
            if token.kind is Kind.END and self.measures is not None and not enough_measures:
                continue
            if token.kind in (Kind.TIME, Kind.LENGTH):
                length = int(token.duration / v.tick)
                if not self.tables.fillable_by_all(length):
                    continue  # some voice could not fill such a measure
                if not self._ties_fit(length):
                    continue  # a note tied over the bar line must be continuable in a measure this long
            if token.kind is Kind.LENGTH and token.duration == g.bar_length:
                continue  # a length is written only where it differs from the time signature
            if token.kind in HEADER_KINDS:
                length = measure_ticks if token.kind in (Kind.KEY, Kind.PARTS) else int(token.duration / v.tick)
                need[token_id] = 1 + self._closing_cost(0, 0, length)  # room to write the measure it heads
            if token.kind is Kind.VOICE:
                if self._fill(measure_ticks, token.number) >= UNREACHABLE:
                    continue
                need[token_id] = 1 + self._closing_cost(token.number, measure_ticks, measure_ticks)
            mask[token_id] = True
        if (Kind.NOTE in FOLLOWS[g.last] or Kind.CHORD in FOLLOWS[g.last]) and g.voice >= 1:
            notes, notes_need = self._note_mask(measure_ticks, bar_ticks)
            mask |= notes
            need = np.where(notes, notes_need, need)
        if g.last is Kind.END or not mask.any():
            return self.tables.nothing, need  # a dead end, decided once per state
        return mask, need

    def _note_mask(self, measure_ticks: int, bar_ticks: int) -> tuple[np.ndarray, np.ndarray]:
        """Notes, rests, grace notes and chord notes the voice may write next."""
        v, g = self.v, self.grammar
        remaining = int(g.remaining / v.tick)
        after = remaining - v.ticks
        in_range = self.tables.in_range[g.voice]
        need = 1 + self._closing_cost(g.voice, after, measure_ticks)
        mask = np.zeros(v.size, dtype=bool)
        if g.last in (Kind.NOTE, Kind.CHORD):  # the chord may grow downwards
            below = (v.kind == _CHORD) & (v.rank >= 0) & (v.rank < _rank(g.chord_low))
            if g.pending:  # it owes tied pitches: only they, or notes between them and the last one
                owed = np.isin(v.pitch, [v.pitches.index(p) for p in g.pending if p in v.pitches])
                return self._continuable_ties(below & (in_range | owed) & (v.rank >= max(map(_rank, g.pending))),
                                              after, need, bar_ticks)
            mask |= below & in_range
        if remaining > 0:
            fits = (v.ticks > 0) & (v.ticks <= remaining) & (self._fill(after, g.voice) < UNREACHABLE)
            tied = g.open_ties.get(g.voice, ())
            if tied:
                # the next event sounds every tied pitch: its first note is the highest of them, or
                # a note above them with the tied ones as chord notes under it
                top = max(tied, key=language.pitch_rank)
                heads = (v.kind == _NOTE) & fits & ~v.grace
                if all(p in v.chord_pitches for p in tied if p != top):
                    mask |= heads & (v.pitch == (v.pitches.index(top) if top in v.pitches else -2))
                if all(p in v.chord_pitches for p in tied):
                    mask |= heads & in_range & (v.rank > _rank(top))
            else:
                mask |= fits & ((v.kind == _REST) | (in_range & (v.kind == _NOTE)))
        if not g.open_ties.get(g.voice):
            mask |= v.grace & in_range  # no tie may lead into a grace note
        return self._continuable_ties(mask, after, need, bar_ticks)

    def _continuable_ties(self, mask, after, need, bar_ticks: int) -> tuple[np.ndarray, np.ndarray]:
        """A tie must be continuable: by a note of the same pitch in this measure, or in the next;
        none across the last measure's bar line, and none within two measures' worth of tokens
        of the budget's end (write towards the end)."""
        v, g = self.v, self.grammar
        ties = mask & v.tie
        if ties.any():
            continuable = self.tables.continuable[g.voice]
            rooms = np.where(after > 0, after, bar_ticks).clip(0, continuable.shape[1] - 1)
            ok = continuable[v.pitch.clip(0), rooms]
            if self._last_measure():
                ok &= after > 0
            mask &= ~ties | ok
            need = np.where(v.tie, np.maximum(need, 2 * self._closing_cost(0, 0, bar_ticks) + 9), need)
        return mask, need

    def _complete_measures(self) -> int:
        g = self.grammar
        closed = g.last in EVENT_KINDS and g.remaining == 0 and not g.pending \
            and not g.skips_required(self.num_voices + 1)
        return g.measure_index + closed

    def _ties_fit(self, measure_ticks: int) -> bool:
        """Every note tied over the bar line can be continued, by its voice, in a measure this long."""
        continuable, pitches = self.tables.continuable, self.v.pitches
        return all(pitch in pitches and continuable[voice, pitches.index(pitch), measure_ticks]
                   for voice, tied in self.grammar.open_ties.items() for pitch in tied)

    def _last_measure(self) -> bool:
        return self.measures is not None and self.grammar.measure_index + 1 >= self.measures


class GrammarLogitsProcessor:
    """transformers LogitsProcessor: -inf for every token the constraint forbids, per row."""

    def __init__(self, constraints: list[ScoreConstraint], prompt_length: int, stop_ids: list[int]):
        self.constraints = constraints
        self.seen = prompt_length
        self.after_end = np.zeros(constraints[0].v.size, dtype=bool)  # after || : only the end of text
        self.after_end[stop_ids] = True

    def __call__(self, input_ids, scores):
        import torch
        length = input_ids.shape[1]
        for constraint, new_ids in zip(self.constraints, input_ids[:, self.seen:length].tolist()):
            for token_id in new_ids:
                constraint.advance(token_id)
        self.seen = length
        rows, penalties, grammar_rows = [], [], []
        for constraint in self.constraints:
            mask = constraint.allowed()
            rows.append(self.after_end if constraint.finished else mask)
            penalties.append(None if constraint.finished else constraint.penalty)
            if constraint.weigh_steps:
                grammar_rows.append(self.after_end if constraint.finished else constraint.grammar_mask | mask)
        forbidden = np.logical_not(np.stack(rows))
        self.grammar_allowed = np.stack(grammar_rows) if grammar_rows else None  # for particle weights
        width = scores.shape[1]
        if any(p is not None for p in penalties):  # soft rules
            size = forbidden.shape[1]
            penalty = np.stack([np.zeros(size, dtype=np.float32) if p is None else p for p in penalties])
            penalty = np.pad(penalty, ((0, 0), (0, max(0, width - size))))[:, :width]
            scores = scores - torch.from_numpy(penalty).to(scores.device, scores.dtype)
        if forbidden.shape[1] < width:  # a model's vocabulary may be padded beyond its tokenizer's (Pythia's is)
            forbidden = np.pad(forbidden, ((0, 0), (0, width - forbidden.shape[1])), constant_values=True)
        return scores.masked_fill(torch.from_numpy(forbidden[:, :width]).to(scores.device), float("-inf"))


# ----------------------------------------------------------------------------- models on disk

def load_model_dir(model_dir: str, device: str = "cpu"):
    """A trained ScoreLM directory: model (on `device`: lm.pick_device's names, in
    lm.inference_dtype), tokenizer, and what training recorded of the data."""
    import json
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from scorelm import model_folder
    from scorelm.cli import UserError
    transformers_logging.disable_progress_bar()  # a weights bar for a model that loads in a blink
    folder = Path(model_dir)
    metadata = model_folder.check_files(folder)  # one line for a missing, damaged or mixed folder
    try:
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"cannot load the model in {folder}/: {' '.join(str(error).split())[:150]}") from None
    model_folder.check_loaded(folder, model, tokenizer)
    from scorelm import lm
    target = lm.pick_device(device)
    if target.type != "cpu":
        model.to(device=target, dtype=lm.inference_dtype(target))
    model.eval()
    trained = folder / "train_config.json"
    if trained.is_file():  # a model trained from scratch knows the positions of its training blocks only
        settings = json.loads(trained.read_text())
        if settings.get("from_scratch") and 0 < settings.get("max_length", 0) < model.config.max_position_embeddings:
            model.config.max_position_embeddings = settings["max_length"]  # saved before the config said so
    metadata = metadata or {"voices": 4, "voice_ranges": {}}
    return model, tokenizer, metadata


def layout_of(metadata: dict, voices: int) -> tuple | None:
    """The layout of parts and staves the model's training pieces of this many voices usually
    state (None: no P words, every voice a part of its own, as in the chorales)."""
    layout = metadata.get("parts", {}).get(str(voices))
    return tuple(tuple(staves) for staves in layout) if layout else None


def stop_ids(tokenizer) -> list[int]:
    """Generation ends at || (the end of the piece) or at the end-of-text token."""
    ids = [tokenizer.eos_token_id]
    end = tokenizer(" ||", add_special_tokens=False)["input_ids"]
    if len(end) == 1:
        ids.append(end[0])
    return ids


MIN_NEW_TOKENS = 128  # enough to finish a measure and close the piece, however long the prompt
MEASURES_BUDGET = 1024  # infer.py --measures N without --max-new-tokens: the measures asked for come first


def context_length(model) -> int:
    """Positions the model knows (from scratch, train.py's max_length: load_model_dir sees to it
    for models saved before the config recorded it; fine-tuned, the pretrained model's): beyond them a model writes from positions it never learned, and its music falls apart (long
    free samples turned to runs, rests and grace notes after about 500 tokens)."""
    return getattr(model.config, "max_position_embeddings", None) or 1024


def generate_texts(model, tokenizer, prompt: str, num_samples: int = 1, *, constrain: bool = True,
                   num_voices: int = 4, voice_ranges=None, measures: int | None = None,
                   forced_measures: list[list[str]] | None = None, max_new_tokens: int | None = None,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
                   vocabulary: Vocabulary | None = None, stop_at_end: bool = True, rules: str = "off",
                   skip_rules=(), rule_report: dict | None = None, parts: tuple | None = None,
                   particles: int = 1, one_window: bool = False) -> list[str]:
    """Sample `num_samples` pieces continuing `prompt`, in one batch with the KV cache.
    max_new_tokens None: as many as the model's context holds after the prompt (at least
    MIN_NEW_TOKENS), so that a new piece closes before the positions the model was never trained on.
    stop_at_end=False runs every row for max_new_tokens steps (for timing decoding alone).
    rules: the voice-leading rules' strength (off, soft, hard), all but `skip_rules`;
    rule_report (a dict) receives how often hard mode had to drop each rule, and how many
    endings were written again (see _rewrite_endings). parts: the layout of parts and staves a
    new piece states (layout_of(metadata)); None: every voice a part of its own. A layout with
    several voices on a staff (a piano's) is sampled without the voice-leading rules.
    particles > 1: each piece is the survivor of that many sequences sampled side by side and
    resampled by how much of the model's probability the rules leave them (_sample_particles);
    without rules, one. A harmonization, or a piece of `measures` measures, that needs more
    tokens than the model's context holds is written in windows of it (_write_in_windows);
    one_window: this call writes one of them, so the piece is not closed within its tokens."""
    import torch
    from transformers import LogitsProcessorList, set_seed

    from scorelm import lm
    if seed is not None:
        set_seed(seed)
    prompt_ids = lm.piece_ids(tokenizer, prompt) if prompt.strip() else [tokenizer.eos_token_id]
    budget_given = max_new_tokens is not None
    if max_new_tokens is None:
        max_new_tokens = max(MIN_NEW_TOKENS, context_length(model) - len(prompt_ids))
    # a harmonization, or a piece of set measures given more tokens than the context holds, is
    # written in windows of it (an ending written again keeps to its own last measure: no budget given)
    windows = (bool(forced_measures) or measures is not None and budget_given) and constrain and stop_at_end \
        and max_new_tokens > context_length(model) - len(prompt_ids) > 0
    if windows:
        max_new_tokens = context_length(model) - len(prompt_ids)
    stops = stop_ids(tokenizer)
    processors = LogitsProcessorList()
    if parts:
        rules = "off"  # the rules are four-part writing's; a piano's staves of voices are not that
    if rules == "off" or not constrain:
        particles = 1  # nothing to weigh them by: every particle is as likely as the next
    input_ids = torch.tensor([prompt_ids] * (num_samples * particles), device=model.device)
    if constrain:
        vocabulary = vocabulary or Vocabulary.from_tokenizer(tokenizer)
        tables = vocabulary.tables(num_voices, voice_ranges)
        rule_tables = None
        if rules != "off":
            enabled = [name for name in voice_leading.RULE_NAMES if name not in skip_rules]
            rule_tables = vocabulary.rule_tables(num_voices, rules, enabled)
        # the tokens the piece must close within: none where the measures decide where it ends
        closing_budget = None if forced_measures or windows or one_window else max_new_tokens
        constraints = []
        for _ in range(num_samples * particles):
            constraint = ScoreConstraint(vocabulary, tables, measures, forced_measures, closing_budget,
                                         rule_tables, parts)
            constraint.start(prompt_ids)
            constraints.append(constraint)
        processors.append(GrammarLogitsProcessor(constraints, len(prompt_ids), stops + [tokenizer.pad_token_id]))
    if particles > 1 and constrain:
        for constraint in constraints:
            constraint.weigh_steps = True
        output, constraints = _sample_particles(model, input_ids, processors[0], particles, max_new_tokens,
                                                stops if stop_at_end else [], tokenizer.pad_token_id,
                                                temperature=temperature, top_k=top_k, top_p=top_p)
    else:
        generation_config = copy.deepcopy(model.generation_config)
        generation_config.update(do_sample=True, temperature=temperature, top_k=top_k or None, top_p=top_p,
                                 max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=stops if stop_at_end else None)
        with torch.no_grad():
            output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                    generation_config=generation_config, logits_processor=processors)
    if constrain and rule_report is not None:
        for constraint in constraints:
            if constraint.music is not None:
                for name, count in constraint.music.dropped.items():
                    rule_report[name] = rule_report.get(name, 0) + count
    texts = []
    for row in output:
        continuation = tokenizer.decode(row[len(prompt_ids):], skip_special_tokens=True)
        words = (prompt + " " + continuation).split()
        if language.END in words:
            words = words[:words.index(language.END) + 1]
        texts.append(" ".join(words))
    # what a window or an ending written again is sampled with: these settings, as they now stand
    settings = dict(num_voices=num_voices, voice_ranges=voice_ranges, parts=parts, temperature=temperature,
                    top_k=top_k, top_p=top_p, vocabulary=vocabulary, rules=rules, skip_rules=skip_rules,
                    particles=particles)
    windowed = set()  # rows whose constraint followed only their first window
    if windows:
        for row, text in enumerate(texts):
            if not text.endswith(language.END):
                texts[row] = _write_in_windows(model, tokenizer, text, measures, forced_measures, seed, row,
                                               rule_report, **settings)
                windowed.add(row)
    if constrain and rules != "off" and measures is None and not forced_measures and stop_at_end:
        faults = {row: _ending_faults(c.music, texts[row]) for row, c in enumerate(constraints)
                  if c.music is not None and texts[row].endswith(language.END)}
        for row, broken in faults.items():
            if broken:
                texts[row] = _rewrite_ending(model, tokenizer, texts[row], prompt, seed, row, rule_report,
                                             modal_only=broken == {"signature_tonic"}, **settings)
    if constrain and rule_report is not None and measures is not None and not forced_measures:
        # a piece of known measures (an ending written again reads these): does it close as the rules want
        for row, c in enumerate(constraints):
            if c.music is not None and texts[row].endswith(language.END) and row not in windowed:
                for name in _ending_faults(c.music, texts[row]):
                    rule_report[ENDING_FAULTS[name]] = rule_report.get(ENDING_FAULTS[name], 0) + 1
    return texts


def _write_in_windows(model, tokenizer, text: str, measures: int | None, forced_measures: list[list[str]] | None,
                      seed: int | None, row: int, rule_report, **settings) -> str:
    """A harmonization (or a piece of `measures` measures) that reached the end of the model's
    context, finished in windows: the measure it was writing is dropped, the last measures that
    fit in half the context become the next window's prompt (their key and time signatures
    stated again), and the next measures (of the melody) are written within the context after
    it; until the piece ends. A model writing past the positions it was trained on loses its way
    (see context_length); this keeps every note it writes within them, the previous measures
    always in view."""
    from scorelm import lm
    from scorelm.cli import UserError
    context = context_length(model)
    words = text.split()
    total = len(forced_measures) if forced_measures else measures
    for window in range(1, total + 1):
        if words[-1] == language.END:
            break
        kept = words[:len(words) - words[::-1].index(language.BAR) - 1]  # without the measure cut off
        done = kept.count(language.BAR)
        window_seed = None if seed is None else seed * 1013 + row * 37 + window
        new = None
        for most_tokens in (context // 2, 0) if done else ():  # if not even one measure fits after it: the last alone
            prompt = _window_prompt(kept, most_tokens, tokenizer)
            shown = prompt.count(language.BAR)
            still = dict(forced_measures=[[]] * shown + forced_measures[done:]) if forced_measures \
                else dict(measures=shown + total - done)
            result = generate_texts(model, tokenizer, prompt, 1,
                                    max_new_tokens=context - len(lm.piece_ids(tokenizer, prompt)),
                                    seed=window_seed, rule_report=rule_report, one_window=True, **still,
                                    **settings)[0]
            new = result.split()[len(prompt.split()):]
            if language.END in new or new.count(language.BAR) >= 2:
                break
            new = None
        if new is None and forced_measures:
            raise UserError(f"measure {done + 1} of the melody does not fit in the model's context of {context} "
                            "tokens with the measure before it")
        if new is None:  # a free piece's measure longer than the context allows: written on past it, as before
            return generate_texts(model, tokenizer, " ".join(words), 1, measures=total, max_new_tokens=MEASURES_BUDGET,
                                  seed=window_seed, rule_report=rule_report, one_window=True, **settings)[0]
        words = kept + new
    return " ".join(words)


def _window_prompt(words: list[str], most_tokens: int, tokenizer) -> str:
    """The last complete measures of `words` that fit in `most_tokens` (at least one), as a piece
    of their own: the key and time signatures in force stated in its first measure. Built on the
    words, not on a parse: a parse would drop a tie still open into the next measure."""
    from scorelm import lm
    bars = [i for i, word in enumerate(words) if word == language.BAR]
    chosen = None
    for start in reversed(bars):
        stated = {word[:2]: word for word in words[:start] if word[:2] in ("K:", "T:")}  # the last of each
        header_end = start + 1
        while header_end < len(words) and words[header_end][:2] in ("K:", "T:", "P:", "L:"):
            header_end += 1
        header = {word[:2]: word for word in words[start + 1:header_end]}
        first = [stated.get(kind) if kind not in header else header[kind] for kind in ("K:", "T:")]
        rest = [word for word in words[start + 1:header_end] if word[:2] not in ("K:", "T:")]
        text = " ".join([language.BAR] + [word for word in first if word] + rest + words[header_end:])
        if chosen is not None and len(lm.piece_ids(tokenizer, text)) > most_tokens:
            break
        chosen = text
    return chosen


GIVE_UP_NATS = 4.0  # a particle's weight when hard mode gives up a rule: as soft mode's penalty
RESAMPLE_BELOW = 0.5  # resample a piece's particles when their effective number falls below this share


def _sample_particles(model, input_ids, processor: GrammarLogitsProcessor, particles: int, max_new_tokens: int,
                      stops: list[int], pad_id: int, *, temperature: float, top_k: int, top_p: float):
    """Sequential Monte Carlo sampling under the rules: the pieces the model would write, given
    that they keep the rules, rather than the pieces it writes when each note that breaks a rule
    is struck out as it comes.

    Striking notes out one at a time is greedy: the tenor is written before the bass, so when
    every step the bass would take makes parallels with it, the bass must leap where Bach would
    have written another tenor note. Here each piece is `particles` sequences sampled side by
    side, each weighed at every step by the share of the model's probability that the grammar's
    choices keep under the rules (a harmonization's given melody notes weigh nothing: sequences
    are compared at equal lengths, and the melody's own probability would favour those whose lower
    voices had written more notes by then, which made busy eighth-note basses). When a
    piece's weights grow uneven, its sequences are resampled by weight (systematic resampling,
    copying the KV cache's rows and the grammar states), so that sequences in a corner give way
    to sequences that are not; at the end one is drawn by weight. transformers' generate() has
    no hook to reorder its rows in mid-run, hence this loop; its sampling warpers are the
    library's. Returns the chosen rows (prompt included) and their constraints."""
    import torch
    from transformers import (DynamicCache, LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper,
                              TopPLogitsWarper)

    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    rows = input_ids.shape[0]
    pieces = rows // particles
    device = input_ids.device
    log_weights = torch.zeros(rows, dtype=torch.float64, device=device)
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    stop_tensor = torch.tensor(stops or [-1], device=device)
    cache = DynamicCache()
    step_input = input_ids
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(input_ids=step_input, cache=cache, use_cache=True).logits[:, -1, :].float()
        scores = processor(input_ids, logits)
        given_up = torch.tensor([c.rules_given_up for c in processor.constraints], dtype=torch.float64, device=device)
        step = step_log_weights(logits, scores, processor.grammar_allowed, temperature) - GIVE_UP_NATS * given_up
        log_weights += torch.where(unfinished & torch.isfinite(step), step, 0.0)
        order = _resampled(log_weights, pieces, particles)
        if order is not None:
            input_ids, scores, unfinished = input_ids[order], scores[order], unfinished[order]
            cache.reorder_cache(order)
            processor.constraints = _copies(processor.constraints, order.tolist())
            log_weights = log_weights.view(pieces, particles).logsumexp(1, keepdim=True).sub(
                np.log(particles)).expand(pieces, particles).reshape(rows).clone()
        probabilities = torch.softmax(warpers(input_ids, scores), dim=-1)
        next_tokens = torch.multinomial(probabilities, 1).squeeze(1)
        next_tokens = torch.where(unfinished, next_tokens, pad_id)
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=1)
        unfinished &= ~torch.isin(next_tokens, stop_tensor)
        if not unfinished.any():
            break
        step_input = next_tokens[:, None]
    chosen = torch.multinomial(torch.softmax(log_weights.view(pieces, particles), dim=1), 1).squeeze(1)
    chosen += torch.arange(pieces, device=device) * particles
    return input_ids[chosen], [processor.constraints[i] for i in chosen.tolist()]


def step_log_weights(logits, scores, grammar_allowed: np.ndarray, temperature: float):
    """Each row's log weight for one step: the tempered probability mass of what may come (the
    rules' and forced tokens' mask in `scores`, -inf where forbidden, soft penalties taken off)
    over the mass of what the grammar alone allows (`grammar_allowed`, per row and token id). It
    does not depend on the token drawn, so a piece's particles are resampled before drawing it."""
    import torch
    width = logits.shape[1]
    if grammar_allowed.shape[1] < width:  # a vocabulary padded beyond the tokenizer's
        grammar_allowed = np.pad(grammar_allowed, ((0, 0), (0, width - grammar_allowed.shape[1])))
    grammar = torch.from_numpy(grammar_allowed[:, :width]).to(logits.device)
    kept = torch.logsumexp(scores.float() / temperature, dim=1)
    allowed = torch.logsumexp((logits.float() / temperature).masked_fill(~grammar, float("-inf")), dim=1)
    return (kept - allowed).double()


def _resampled(log_weights, pieces: int, particles: int):
    """Row order after systematic resampling of each piece whose particles' effective number is
    below RESAMPLE_BELOW of them (None: no piece needs it)."""
    import torch
    device = log_weights.device
    weights = torch.softmax(log_weights.cpu().view(pieces, particles), dim=1)  # the CPU's generator on any device
    effective = 1.0 / (weights ** 2).sum(dim=1)
    low = effective < RESAMPLE_BELOW * particles
    if not low.any():
        return None
    order = torch.arange(pieces * particles).view(pieces, particles).clone()
    positions = (torch.rand(pieces, 1, dtype=torch.float64) + torch.arange(particles)) / particles
    cumulative = weights.cumsum(dim=1)
    cumulative[:, -1] = 1.0
    picks = torch.searchsorted(cumulative, positions).clamp(max=particles - 1)
    order[low] = (picks + torch.arange(pieces)[:, None] * particles)[low]
    return order.reshape(-1).to(device)


def _copies(constraints: list, order: list[int]) -> list:
    """constraints reordered: a row kept once stays itself, a duplicated one is copied."""
    taken, result = set(), []
    for source in order:
        result.append(constraints[source] if source not in taken else constraints[source].copy())
        taken.add(source)
    return result


ENDING_FAULTS = {"final_chord": "closes off the tonic", "signature_tonic": "closes on a mode's final"}


def _ending_faults(music: voice_leading.VoiceLeading, text: str) -> set[str]:
    """The rules the close of a piece (its text, `music` having followed it) breaks: final_chord,
    and (no melody given) signature_tonic, unless the bass closes on the tonic of the key music21
    finds for the whole piece; each only where enabled."""
    enabled, faults = music.t.enabled, set()
    if "final_chord" in enabled and music.end_breaks():
        faults.add("final_chord")
    if "signature_tonic" in enabled and music.free and music.closes_off_signature():
        if music.closing_bass() != voice_leading.analysed_tonic(language.parse(text)[0][0]):
            faults.add("signature_tonic")
    return faults


ENDING_TRIES = 3


def _rewrite_ending(model, tokenizer, text: str, prompt: str, seed: int | None, row: int, rule_report,
                    modal_only: bool = False, **settings) -> str:
    """A piece closes where the model closes it; a model cannot know that the rules want a tonic
    chord with fermatas there, so when the last chord breaks final_chord (or, with no melody
    given, closes on a church mode's final: signature_tonic), the last measure is written again
    knowing that it is the last (those rules then shape the soprano's last note and the chord
    under it). Up to ENDING_TRIES times; the first that closes as the rules want wins. Where none
    does, the first that closes on a mode's final is still better than an ending off any tonic
    (not so where that is what the model wrote: modal_only); else the original stays. Never
    touches the user's prompt."""
    words = text.split()
    last_bar = len(words) - 1 - words[::-1].index(language.BAR)
    if len(prompt.split()) > last_bar + 1:
        return text  # the last measure is (partly) the user's own
    measures = words.count(language.BAR)
    fallback = None
    for attempt in range(ENDING_TRIES):
        report: dict = {}
        candidate = generate_texts(model, tokenizer, " ".join(words[:last_bar + 1]), 1, measures=measures,
                                   seed=None if seed is None else seed * 1009 + row * 31 + attempt,
                                   rule_report=report, **settings)[0]
        if "final_chord" in report or ENDING_FAULTS["final_chord"] in report:
            continue
        if ENDING_FAULTS["signature_tonic"] not in report:
            return _written_again(candidate, report, rule_report)
        fallback = fallback or (candidate, report)
    if fallback is not None and not modal_only:
        return _written_again(*fallback, rule_report)
    if rule_report is not None:
        rule_report["endings left as the model wrote them"] = rule_report.get("endings left as the model wrote them", 0) + 1
    return text


def _written_again(candidate: str, report: dict, rule_report: dict | None) -> str:
    if rule_report is not None:
        for name, count in report.items():
            rule_report[name] = rule_report.get(name, 0) + count
        rule_report["endings written again"] = rule_report.get("endings written again", 0) + 1
    return candidate


def forbidden_notes(vocabulary: Vocabulary, ids: list[int], num_voices: int) -> list[tuple[int, np.ndarray]]:
    """Where the rules the default decoder forbids (mixed mode's hard ones: parallel fifths and
    octaves, the final chord) rule out words the grammar allows, along a piece's ids (as
    lm.piece_ids gives them): (position, the forbidden ids), at the positions where the piece's
    own word is not one of them (where Bach wrote a parallel himself, nothing is taught against
    it). What train.py's unlikelihood_weight teaches the model to leave alone."""
    hard = tuple(rule.name for rule in voice_leading.RULES if rule.strength == "hard")
    measures = sum(1 for token_id in ids if (t := vocabulary.symbol.get(token_id)) is not None and t.kind is Kind.BAR)
    constraint = ScoreConstraint(vocabulary, vocabulary.tables(num_voices), measures,
                                 rules=vocabulary.rule_tables(num_voices, "hard", hard))
    found = []
    for position, token_id in enumerate(ids[1:], start=1):
        allowed = constraint.allowed()
        grammar = constraint.grammar_mask
        if constraint.finished or grammar is None or not grammar[token_id]:
            break  # the grammar lost the piece (words outside the decoder's vocabulary): teach nothing further
        if allowed is not grammar and allowed[token_id]:
            forbidden = np.flatnonzero(grammar & ~allowed)
            if len(forbidden):
                found.append((position, forbidden))
        constraint.advance(token_id)
    return found
