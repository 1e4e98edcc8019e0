"""Constrained decoding: a transformers LogitsProcessor that lets the model write only text the
score language's grammar accepts, so every sample is a valid score.

The grammar itself (what may follow what, how measures fill) is language.Grammar: this module
asks it about one representative token per kind, duration and pitch, then adds what only a
decoder needs: never painting itself into a corner (a remainder no rest can fill, a tie no note
can continue, a token budget too small to close the piece), voice ranges, forced tokens
(harmonization), and a measure count.
"""
from __future__ import annotations

import bisect
import copy
from dataclasses import dataclass
from fractions import Fraction
from math import lcm

import numpy as np

from scorelm import language
from scorelm.language import FOLLOWS, HEADER_KINDS, Grammar, Kind, Token

UNREACHABLE = 10 ** 6
_UNSET = object()


@dataclass
class Vocabulary:
    """Every token id that is one whole symbol of the language, with its parsed Token. Other
    ids (BPE pieces of a symbol, special tokens) are never chosen under constraints."""
    size: int
    symbol: dict[int, Token]  # id -> Token
    ids_of: dict[str, int]  # symbol text -> id
    kind: np.ndarray  # per id: index into KINDS, -1 for non-symbols
    ticks: np.ndarray  # NOTE/REST duration in ticks, else 0
    pitch: np.ndarray  # NOTE: index into pitches, else -1
    midi: np.ndarray  # NOTE: MIDI number, else -1
    tie: np.ndarray  # NOTE: tied onward
    pitches: list[str]
    tick: Fraction  # the duration of one tick
    structural: list[tuple[int, Token]]  # BAR, END, KEY, TIME, LENGTH, VOICE tokens

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "Vocabulary":
        size = len(tokenizer)
        symbol: dict[int, Token] = {}
        special = set(tokenizer.all_special_ids)
        for token_id in range(size):
            if token_id in special:
                continue
            text = tokenizer.decode([token_id])
            if not text.startswith(" ") or len(text.split()) != 1:
                continue  # a piece of a symbol, not a whole one
            token = language.parse_token(text.strip())
            if token is not None:
                symbol.setdefault(token_id, token)
        durations = {t.duration for t in symbol.values() if t.duration is not None}
        tick = Fraction(1, lcm(*(d.denominator for d in durations))) if durations else Fraction(1)
        kind = np.full(size, -1, dtype=np.int8)
        ticks = np.zeros(size, dtype=np.int64)
        pitch = np.full(size, -1, dtype=np.int32)
        midi = np.full(size, -1, dtype=np.int32)
        tie = np.zeros(size, dtype=bool)
        pitches = sorted({t.pitch for t in symbol.values() if t.pitch})
        pitch_index = {p: i for i, p in enumerate(pitches)}
        structural = []
        for token_id, token in symbol.items():
            kind[token_id] = KINDS.index(token.kind)
            if token.kind in (Kind.NOTE, Kind.REST):
                ticks[token_id] = int(token.duration / tick)
                if token.pitch:
                    pitch[token_id] = pitch_index[token.pitch]
                    midi[token_id] = language.midi_number(token.pitch)
                    tie[token_id] = token.tie
            else:
                structural.append((token_id, token))
        return cls(size, symbol, {t.text: i for i, t in symbol.items()}, kind, ticks, pitch, midi, tie,
                   pitches, tick, structural)

    def __post_init__(self):
        self.structural_by_kind = {kind: [(i, t) for i, t in self.structural if t.kind is kind] for kind in Kind}
        self._tables: dict = {}

    def tables(self, num_voices: int, voice_ranges=None) -> "DecodingTables":
        """The decoding tables (and their mask cache) for these voices, built once."""
        key = (num_voices, repr(voice_ranges))
        if key not in self._tables:
            self._tables[key] = DecodingTables(self, num_voices, voice_ranges)
        return self._tables[key]


KINDS = list(Kind)
_NOTE, _REST = KINDS.index(Kind.NOTE), KINDS.index(Kind.REST)


class DecodingTables:
    """What the constraint looks up on every step, computed once per vocabulary and ranges."""

    def __init__(self, vocabulary: Vocabulary, num_voices: int, voice_ranges=None):
        v = vocabulary
        self.num_voices = num_voices
        rest_ticks = sorted({int(t) for t in v.ticks[v.kind == _REST]})
        longest = max([int(tok.duration / v.tick) for _, tok in v.structural
                       if tok.kind in (Kind.TIME, Kind.LENGTH)] + [int(v.ticks.max()), 1])
        # fewest rest tokens that fill r ticks exactly (UNREACHABLE if none can)
        self.min_rests = np.full(longest + 1, UNREACHABLE, dtype=np.int64)
        self.min_rests[0] = 0
        for r in range(1, longest + 1):
            best = min((self.min_rests[r - t] for t in rest_ticks if t <= r), default=UNREACHABLE)
            self.min_rests[r] = min(UNREACHABLE, best + 1)
        self._min_rests = self.min_rests.tolist()  # for single lookups, several per decoding step
        # continuable[p, room]: a note of pitch p fits `room` ticks with a fillable remainder
        fillable = self.min_rests < UNREACHABLE
        self.continuable = np.zeros((max(1, len(v.pitches)), longest + 1), dtype=bool)
        for token_id in np.flatnonzero(v.kind == _NOTE):
            t = int(v.ticks[token_id])
            rooms = np.arange(t, longest + 1)
            self.continuable[v.pitch[token_id], rooms] |= fillable[rooms - t]
        self.in_range = {}
        for number in range(1, num_voices + 1):
            mask = v.kind == _NOTE
            if voice_ranges and number <= len(voice_ranges) and voice_ranges[number - 1]:
                low, high = voice_ranges[number - 1]
                mask = mask & (v.midi >= low) & (v.midi <= high)
            self.in_range[number] = mask
        self.nothing = np.zeros(v.size, dtype=bool)
        self.cache: dict[tuple, np.ndarray] = {}  # grammar state -> allowed ids

    def fill(self, ticks):
        """min_rests for any ticks (an int or an array), UNREACHABLE outside the table."""
        if isinstance(ticks, int):  # numpy's overhead on one number would dominate a decoding step
            return self._min_rests[ticks] if 0 <= ticks < len(self._min_rests) else UNREACHABLE
        ticks = np.asarray(ticks)
        out = np.full(ticks.shape, UNREACHABLE, dtype=np.int64)
        inside = (ticks >= 0) & (ticks < len(self.min_rests))
        out[inside] = self.min_rests[ticks[inside]]
        return out

    def closing_cost(self, voice: int, remaining_ticks, measure_ticks: int):
        """Fewest tokens to finish the measure and the piece from a state in `voice` with
        `remaining_ticks` (an int or an array) left in it: rests, the missing voices (marker and
        rests), ||, end."""
        later = self.num_voices - voice
        return self.fill(remaining_ticks) + later * (1 + int(self.fill(measure_ticks))) + 2


class ScoreConstraint:
    """Grammar state of one sequence, and the mask of token ids that may come next."""

    def __init__(self, vocabulary: Vocabulary, tables: DecodingTables, num_voices: int, measures: int | None = None,
                 forced_measures: list[list[str]] | None = None, max_tokens: int | None = None):
        self.v = vocabulary
        self.tables = tables
        self._fill = tables.fill
        self._closing_cost = tables.closing_cost
        self._bar_length: object = _UNSET  # the bar length _bar_ticks and _far_budget were derived from
        self._bar_ticks = self._far_budget = 0
        self.grammar = Grammar(num_voices)
        self.num_voices = num_voices
        self.measures = len(forced_measures) if forced_measures else measures
        self.forced_measures = forced_measures
        self.forced: list[int] = []  # ids that must come next, in order
        self.max_tokens = max_tokens
        self.generated = 0
        self.finished = False

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
        g = self.grammar
        measure_done = token.kind in (Kind.NOTE, Kind.REST) and g.voice == self.num_voices and g.remaining == 0
        if self.forced_measures and not self.forced and measure_done:
            self._queue_next_measure()

    def start(self, prompt_ids: list[int]) -> None:
        """Follow the prompt (its validity was checked before); queue forced tokens."""
        for token_id in prompt_ids:
            token = self.v.symbol.get(token_id)
            if token is not None:
                self.grammar.advance(token)
        if self.forced_measures and self.grammar.last is None:
            self._queue_next_measure()

    def _queue_next_measure(self) -> None:
        index = self.grammar.measure_index + 1
        if index < len(self.forced_measures):
            self.forced = [self.v.ids_of[word] for word in self.forced_measures[index]]

    # -- the mask
    def allowed(self) -> np.ndarray:
        """The ids that may come next. Masks are cached by grammar state and shared between
        rows and steps: treat the array as read-only."""
        v, g = self.v, self.grammar
        if self.finished:
            return self.tables.nothing
        if self.forced:
            mask = np.zeros(v.size, dtype=bool)
            mask[self.forced[0]] = True
            return mask
        if g.bar_length is not self._bar_length:  # a new time signature (rare): recompute what it decides
            self._bar_length = g.bar_length
            self._bar_ticks = int(g.bar_length / v.tick) if g.bar_length else 0
            self._far_budget = 4 * self._closing_cost(0, 0, self._bar_ticks) + 16
        bar_ticks = self._bar_ticks
        budget = None if self.max_tokens is None else self.max_tokens - self.generated
        if budget is not None and budget > self._far_budget:
            budget = None  # far from the end: the budget rules out nothing yet
        complete_measures = g.measure_index + (1 if g.last in (Kind.NOTE, Kind.REST) and g.remaining == 0
                                               and g.voice == self.num_voices else 0)
        enough_measures = self.measures is not None and complete_measures >= self.measures
        state = (g.last, g.measure_index == 0, g.key is None, g.bar_length, g.measure_length, g.voice, g.filled,
                 g.num_voices, g.open_ties.get(g.voice), bool(g.open_ties), self.measures is not None, enough_measures,
                 self._last_measure(), budget)
        mask = self.tables.cache.get(state)
        if mask is None:
            mask = self._compute_mask(budget, bar_ticks, enough_measures)
            if not mask.any():
                mask = self.tables.nothing  # a dead end, decided once per state
            self.tables.cache[state] = mask
        if mask is self.tables.nothing:
            self.finished = True
        return mask

    def _compute_mask(self, budget, bar_ticks: int, enough_measures: bool) -> np.ndarray:
        v, g = self.v, self.grammar
        mask = np.zeros(v.size, dtype=bool)
        measure_ticks = int(g.measure_length / v.tick) if g.measure_length else 0
        candidates = [pair for kind in FOLLOWS[g.last] for pair in v.structural_by_kind[kind]]
        for token_id, token in candidates:
            if g.violation(token) is not None:
                continue
            if token.kind is Kind.BAR and g.last is not None and g.last is not Kind.END:
                if enough_measures:
                    continue
                if budget is not None and budget < 1 + self._closing_cost(0, 0, bar_ticks):
                    continue  # no room left for another whole measure
            if token.kind is Kind.END and self.measures is not None and not enough_measures:
                continue
            if token.kind in (Kind.TIME, Kind.LENGTH):
                if g.open_ties and g.measure_index > 0:
                    continue  # a tied note's continuation must fit the next measure: keep its length
                if self._fill(int(token.duration / v.tick)) >= UNREACHABLE:
                    continue  # no rests could fill such a measure
            if token.kind is Kind.LENGTH and token.duration >= (g.bar_length or 0):
                continue  # only pickups and short final measures state a length
            if token.kind in HEADER_KINDS and budget is not None:
                length = measure_ticks if token.kind is Kind.KEY else int(token.duration / v.tick)
                if budget < 1 + self._closing_cost(0, 0, length):
                    continue  # a header now would leave no room to write its measure
            if token.kind is Kind.VOICE and budget is not None:
                cost = 1 + self._closing_cost(token.number, measure_ticks, measure_ticks)
                if cost > budget:
                    continue
            if token.kind is Kind.VOICE and self._fill(measure_ticks) >= UNREACHABLE:
                continue
            mask[token_id] = True
        if Kind.NOTE in FOLLOWS[g.last] and g.voice >= 1:
            mask |= self._note_mask(budget, measure_ticks, bar_ticks)
        if g.last is Kind.END:
            mask[:] = False
        return mask

    def _note_mask(self, budget, measure_ticks: int, bar_ticks: int) -> np.ndarray:
        v, g = self.v, self.grammar
        remaining = int(g.remaining / v.tick)
        after = remaining - v.ticks
        fits = (v.ticks > 0) & (v.ticks <= remaining) & (self._fill(after) < UNREACHABLE)
        tied_pitch = g.open_ties.get(g.voice)
        if tied_pitch is not None:
            if tied_pitch not in v.pitches:
                return np.zeros(v.size, dtype=bool)
            notes = (v.kind == _NOTE) & (v.pitch == v.pitches.index(tied_pitch))
            mask = fits & notes
        else:
            mask = fits & ((v.kind == _REST) | self.tables.in_range[g.voice])
        # a tie must be continuable: by a note of the same pitch in this measure, or in the next;
        # none near the end of the token budget, and none across the last measure's bar line
        ties = mask & v.tie
        if ties.any():
            if self._closing(budget, bar_ticks):
                mask &= ~v.tie
            else:
                rooms = np.where(after > 0, after, bar_ticks).clip(0, self.tables.continuable.shape[1] - 1)
                ok = self.tables.continuable[v.pitch.clip(0), rooms]
                if self._last_measure():
                    ok &= after > 0
                mask &= ~ties | ok
        if budget is not None:
            cost = 1 + self._closing_cost(g.voice, after, measure_ticks)
            mask &= cost <= budget
        return mask

    def _closing(self, budget, bar_ticks: int) -> bool:
        """Within two measures' worth of tokens of the budget: write towards the end."""
        return budget is not None and budget <= 2 * self._closing_cost(0, 0, bar_ticks) + 8

    def _last_measure(self) -> bool:
        return self.measures is not None and self.grammar.measure_index + 1 >= self.measures


class GrammarLogitsProcessor:
    """transformers LogitsProcessor: -inf for every token the constraint forbids, per row."""

    def __init__(self, constraints: list[ScoreConstraint], prompt_length: int, stop_ids: list[int]):
        self.constraints = constraints
        self.prompt_length = prompt_length
        self.stop_ids = stop_ids
        self.seen = prompt_length

    def __call__(self, input_ids, scores):
        import torch
        length = input_ids.shape[1]
        for constraint, new_ids in zip(self.constraints, input_ids[:, self.seen:length].tolist()):
            for token_id in new_ids:
                constraint.advance(token_id)
        self.seen = length
        masks = np.stack([c.allowed() for c in self.constraints])
        for row, constraint in enumerate(self.constraints):
            if constraint.finished:  # after || : only the end of text
                masks[row, :] = False
                masks[row, self.stop_ids] = True
        allowed = torch.from_numpy(masks[:, :scores.shape[1]]).to(scores.device)
        return scores.masked_fill(~allowed, float("-inf"))


# ----------------------------------------------------------------------------- models on disk

def load_model_dir(model_dir: str):
    """A trained ScoreLM directory: model, tokenizer, and what training recorded of the data."""
    import json
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from scorelm.cli import UserError
    transformers_logging.disable_progress_bar()  # a weights bar for a model that loads in a blink
    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise UserError(f"no trained model in {folder}/; train one with 'accelerate launch train.py' or pass --model")
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model.eval()
    metadata_file = folder / "scorelm.json"
    metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {"voices": 4, "voice_ranges": {}}
    return model, tokenizer, metadata


def stop_ids(tokenizer) -> list[int]:
    """Generation ends at || (the end of the piece) or at the end-of-text token."""
    ids = [tokenizer.eos_token_id]
    end = tokenizer(" ||", add_special_tokens=False)["input_ids"]
    if len(end) == 1:
        ids.append(end[0])
    return ids


def generate_texts(model, tokenizer, prompt: str, num_samples: int = 1, *, constrain: bool = True,
                   num_voices: int = 4, voice_ranges=None, measures: int | None = None,
                   forced_measures: list[list[str]] | None = None, max_new_tokens: int = 1024,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
                   vocabulary: Vocabulary | None = None, stop_at_end: bool = True) -> list[str]:
    """Sample `num_samples` pieces continuing `prompt`, in one batch with the KV cache.
    stop_at_end=False runs every row for max_new_tokens steps (for timing decoding alone)."""
    import torch
    from transformers import LogitsProcessorList, set_seed

    from scorelm import lm
    if seed is not None:
        set_seed(seed)
    prompt_ids = lm.piece_ids(tokenizer, prompt) if prompt.strip() else [tokenizer.eos_token_id]
    input_ids = torch.tensor([prompt_ids] * num_samples)
    stops = stop_ids(tokenizer)
    processors = LogitsProcessorList()
    if constrain:
        vocabulary = vocabulary or Vocabulary.from_tokenizer(tokenizer)
        tables = vocabulary.tables(num_voices, voice_ranges)
        constraints = []
        for _ in range(num_samples):
            constraint = ScoreConstraint(vocabulary, tables, num_voices, measures, forced_measures,
                                         None if forced_measures else max_new_tokens)
            constraint.start(prompt_ids)
            constraints.append(constraint)
        processors.append(GrammarLogitsProcessor(constraints, len(prompt_ids), stops + [tokenizer.pad_token_id]))
    generation_config = copy.deepcopy(model.generation_config)
    generation_config.update(do_sample=True, temperature=temperature, top_k=top_k or None, top_p=top_p,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=stops if stop_at_end else None)
    with torch.no_grad():
        output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                generation_config=generation_config, logits_processor=processors)
    texts = []
    for row in output:
        continuation = tokenizer.decode(row[len(prompt_ids):], skip_special_tokens=True)
        words = (prompt + " " + continuation).split()
        if language.END in words:
            words = words[:words.index(language.END) + 1]
        texts.append(" ".join(words))
    return texts


# ----------------------------------------------------------------------------- surprisal

def word_surprisals(model, tokenizer, text: str) -> list[float]:
    """Bits the model spends on each whitespace-separated word of `text` (the sum over the
    tokens that make it up), given everything before it."""
    import torch

    from scorelm import lm
    source = lm.model_text(text)
    encoded = tokenizer(source, add_special_tokens=False, return_offsets_mapping=True)
    ids = [tokenizer.eos_token_id] + encoded["input_ids"]
    window = getattr(model.config, "max_position_embeddings", 2048)
    bits = torch.zeros(len(ids))
    scored_until = 1  # ids[0] (the piece start) is given, not predicted
    start = 0
    with torch.no_grad():
        while scored_until < len(ids):
            end = min(len(ids), start + window)
            chunk = torch.tensor([ids[start:end]])
            log_probs = torch.log_softmax(model(chunk).logits[0].float(), dim=-1)
            for position in range(max(scored_until, start + 1), end):
                bits[position] = -log_probs[position - start - 1, ids[position]] / np.log(2)
            scored_until = end
            start = max(start + 1, end - window // 2)  # half a window of context carried over
    word_ends = []
    position = 0
    for word in text.split():
        position = source.index(word, position) + len(word)
        word_ends.append(position)
    totals = [0.0] * len(word_ends)
    for (_, finish), value in zip(encoded["offset_mapping"], bits[1:].tolist()):
        totals[min(bisect.bisect_left(word_ends, finish), len(totals) - 1)] += value
    return totals
