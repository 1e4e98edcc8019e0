"""The grammar constraint: the state of one sequence and the mask of token ids that may come
next, so that the model writes only text the score language's grammar accepts (every sample a
valid score); and the transformers LogitsProcessor that applies it to a batch.

The grammar itself (what may follow what, how measures fill) is language.Grammar: the
constraint asks it about one representative token per kind, duration and pitch, then adds what
only a decoder needs: never painting itself into a corner (a remainder the voice's rests and
notes cannot fill, a tie no note can continue, a token budget too small to close the piece),
voice ranges, forced tokens (harmonization), and a measure count. It rules out nothing else:
every word of every chorale in the corpus is allowed where it stands (tested).
"""
from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np

from scorelm import language
from scorelm.decoding import batched, voice_leading
from scorelm.decoding.rules import OFF
from scorelm.decoding.tables import UNREACHABLE, DecodingTables
from scorelm.decoding.vocabulary import CHORD, KINDS, NOTE, REST, Vocabulary, pitch_order
from scorelm.language import EVENT_KINDS, FOLLOWS, HEADER_KINDS, Grammar, Kind

# after these, a TIME or LENGTH may come: which ties are open then decides which lengths may
LENGTH_MAY_FOLLOW = tuple(kind for kind, after in FOLLOWS.items() if after & {Kind.TIME, Kind.LENGTH})
_UNSET = object()
_RULES_AFTER = (Kind.VOICE,) + EVENT_KINDS  # the rules judge what follows these


class RulesDue(NamedTuple):
    """What the rules read of a step besides its mask (VoiceLeading.choose's arguments)."""
    measure_ticks: int
    last_measure: bool  # the piece's last measure (its final chord)
    fillable: np.ndarray  # per remaining tick count, whether the voice can fill it
    before_following: bool  # an infilled passage's last measure: the music after it follows


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
        self._measure_length: object = _UNSET  # the measure length _measure_ticks was derived from
        self._measure_ticks = 0
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
            if rules is not None and rules.mode != OFF and rules.enabled else None
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
        # infilling (infilling.py) writes a passage of `measures` measures inside a piece: where the
        # piece would close (||), the passage ends with this id instead (the end of text); and
        # unless the passage is the piece's close, its last measure is no final one to the rules
        self.ends_with: int | None = None
        self.closes_piece = True
        self.headers_as_given = False  # no key, time signature, length or layout words but the forced ones
        # infilling some voices: per measure index, per voice number, the kept voices' words
        # (their ids) that follow once that voice has filled the measure
        self.kept_after: dict[int, dict[int, list[int]]] = {}

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
        elif self.kept_after and not self.forced and token.kind in (Kind.NOTE, Kind.REST) \
                and self.grammar.remaining == 0 and not self.grammar.pending:
            self.forced = list(self.kept_after.get(self.grammar.measure_index, {}).get(self.grammar.voice, ()))

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
        mask = self.grammar_allowed()
        due = self.rules_due(mask)
        return mask if due is None else self.apply_rules(mask, due)

    def grammar_allowed(self) -> np.ndarray:
        """What allowed() allows before the voice-leading rules (the processor judges a batch's
        rows by the rules together: rules_due, apply_rules)."""
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
        # what the bar lines, voice markers and headers allowed read: all of the state but the chord's lowest note
        structural = (g.last, g.measure_index == 0, g.key is None, g.bar_length, g.measure_length, g.voice, g.filled,
                      g.num_voices, g.open_ties.get(g.voice), ties, self.measures is not None, enough_measures,
                      self._last_measure(), g.pending, g.optional,
                      (tuple(g.parts), self.parts) if g.in_first_measure else None,
                      # an optional voice with a tie open must appear: which voices may be skipped
                      frozenset(v for v in g.open_ties if v in g.optional) if g.optional else None)
        state = (structural, g.chord_low if g.last in (Kind.NOTE, Kind.CHORD) else None)
        entry = self.tables.cache.get(state)
        if entry is None:
            entry = self.tables.cache[state] = self._compute_mask(self._bar_ticks, enough_measures, structural)
        mask, need = entry
        budget = None if self.max_tokens is None else self.max_tokens - self.generated
        if budget is not None and budget <= self._far_budget:  # near the end: only what still fits
            mask = mask & (need <= budget)
            if not mask.any():
                mask = self.tables.nothing
        if mask is self.tables.nothing:
            self.finished = True
        elif self.ends_with is not None and self.v.end_id >= 0 and mask[self.v.end_id]:
            mask = mask.copy()
            mask[self.v.end_id], mask[self.ends_with] = False, True
        if self.headers_as_given and g.last in (Kind.BAR,) + HEADER_KINDS:
            mask = mask & self._not_headers()
        self.grammar_mask = mask
        return mask

    def rules_due(self, mask: np.ndarray) -> "RulesDue | None":
        """Where the rules judge this step's candidates (a note or rest of a voice is chosen):
        what VoiceLeading.choose reads besides the mask; else None."""
        g = self.grammar
        if mask is self.tables.nothing or self.music is None or g.last not in _RULES_AFTER:
            return None
        last = self._last_measure()
        if g.measure_length is not self._measure_length:  # a new measure length (a Fraction's division is dear)
            self._measure_length, self._measure_ticks = g.measure_length, int(g.measure_length / self.v.tick)
        return RulesDue(self._measure_ticks, last and self.closes_piece, self.tables.fillable[max(g.voice, 0)],
                        last and not self.closes_piece)

    def apply_rules(self, mask: np.ndarray, due: "RulesDue") -> np.ndarray:
        """The rules' verdict on this row alone (VoiceLeading.choose): the narrowed mask; the
        soft rules' penalty in self.penalty."""
        given_up = sum(self.music.dropped.values())
        mask, self.penalty = self.music.choose(mask, *due)
        self.rules_given_up = sum(self.music.dropped.values()) - given_up
        return mask

    def _not_headers(self) -> np.ndarray:
        """Every id but the key, time signature, length and layout words (built once a vocabulary)."""
        derived = self.v.derived
        if "not headers" not in derived:
            derived["not headers"] = ~np.isin(self.v.kind, [KINDS.index(kind) for kind in HEADER_KINDS])
        return derived["not headers"]

    def _forced_mask(self) -> np.ndarray:
        mask = np.zeros(self.v.size, dtype=bool)
        mask[self.forced[0]] = True
        return mask

    def copy(self) -> "ScoreConstraint":
        """An independent copy of this sequence's state (particle sampling duplicates sequences);
        the vocabulary and the tables stay shared."""
        shared = {id(self.v): self.v, id(self.tables): self.tables}
        if self.music is not None:  # and the music around an infilled passage, which no row changes
            for read_only in (self.music.t, self.music.following, self.music.kept):
                shared[id(read_only)] = read_only
        return copy.deepcopy(self, shared)

    def _compute_mask(self, bar_ticks: int, enough_measures: bool, structural_state: tuple) -> tuple[np.ndarray, np.ndarray]:
        """The ids allowed in this grammar state, and for each the token budget it needs (the
        fewest tokens that finish the piece after it, plus itself), applied near the budget's end."""
        v, g = self.v, self.grammar
        measure_ticks = int(g.measure_length / v.tick) if g.measure_length else 0
        entry = self.tables.structural.get(structural_state)
        if entry is None:
            entry = self.tables.structural[structural_state] = self._structural_mask(measure_ticks, bar_ticks,
                                                                                     enough_measures)
        mask, need = entry  # shared: not changed in place
        if (Kind.NOTE in FOLLOWS[g.last] or Kind.CHORD in FOLLOWS[g.last]) and g.voice >= 1:
            notes, notes_need = self._note_mask(measure_ticks, bar_ticks)
            mask = mask | notes
            need = np.where(notes, notes_need, need)
        if g.last is Kind.END or not mask.any():
            return self.tables.nothing, need  # a dead end, decided once per state
        return mask, need

    def _structural_mask(self, measure_ticks: int, bar_ticks: int, enough_measures: bool) -> tuple[np.ndarray, np.ndarray]:
        """The bar lines, voice markers and headers allowed, and the budget each needs."""
        v, g = self.v, self.grammar
        mask = np.zeros(v.size, dtype=bool)
        need = np.zeros(v.size, dtype=np.int64)
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
        return mask, need

    def _note_mask(self, measure_ticks: int, bar_ticks: int) -> tuple[np.ndarray, np.ndarray]:
        """Notes, rests, grace notes and chord notes the voice may write next: put together from
        pieces cached by what each reads (a voice, what remains of its measure, the chord's lowest
        note), so that a grammar state met for the first time costs a few array operations."""
        v, g = self.v, self.grammar
        voice, part = g.voice, self._part
        remaining = int(g.remaining / v.tick)
        in_range = self.tables.in_range[voice]
        need = part(("need", voice, remaining, measure_ticks),
                    lambda: 1 + self._closing_cost(voice, remaining - v.ticks, measure_ticks))
        mask = np.zeros(v.size, dtype=bool)
        if g.last in (Kind.NOTE, Kind.CHORD):  # the chord may grow downwards
            low = g.chord_low
            below = part(("below", low), lambda: (v.kind == CHORD) & (v.rank >= 0) & (v.rank < pitch_order(low)))
            if g.pending:  # it owes tied pitches: only they, or notes between them and the last one
                owed = np.isin(v.pitch, [v.pitches.index(p) for p in g.pending if p in v.pitches])
                return self._continuable_ties(below & (in_range | owed) & (v.rank >= max(map(pitch_order, g.pending))),
                                              remaining, need, measure_ticks, bar_ticks)
            mask |= part(("below in range", voice, low), lambda: below & in_range)
        if remaining > 0:
            fits = part(("fits", voice, remaining), lambda: (v.ticks > 0) & (v.ticks <= remaining)
                        & (self._fill(remaining - v.ticks, voice) < UNREACHABLE))
            tied = g.open_ties.get(voice, ())
            if tied:
                # the next event sounds every tied pitch: its first note is the highest of them, or
                # a note above them with the tied ones as chord notes under it
                top = max(tied, key=language.pitch_rank)
                heads = (v.kind == NOTE) & fits & ~v.grace
                if all(p in v.chord_pitches for p in tied if p != top):
                    mask |= heads & (v.pitch == (v.pitches.index(top) if top in v.pitches else -2))
                if all(p in v.chord_pitches for p in tied):
                    mask |= heads & in_range & (v.rank > pitch_order(top))
            else:
                mask |= part(("notes and rests", voice, remaining),
                             lambda: fits & ((v.kind == REST) | (in_range & (v.kind == NOTE))))
        if not g.open_ties.get(voice):
            mask |= part(("grace", voice), lambda: v.grace & in_range)  # no tie may lead into a grace note
        return self._continuable_ties(mask, remaining, need, measure_ticks, bar_ticks)

    def _part(self, key: tuple, make) -> np.ndarray:
        """A piece of a note mask, made once per key (what it reads) and shared: read-only."""
        found = self.tables.parts.get(key)
        if found is None:
            found = self.tables.parts[key] = make()
        return found

    def _continuable_ties(self, mask, remaining: int, need, measure_ticks: int,
                          bar_ticks: int) -> tuple[np.ndarray, np.ndarray]:
        """A tie must be continuable: by a note of the same pitch in this measure, or in the next;
        none across the last measure's bar line, and none within two measures' worth of tokens
        of the budget's end (write towards the end)."""
        v, voice = self.v, self.grammar.voice
        ties = mask & v.tie
        if ties.any():
            last = self._last_measure()

            def continuable():
                after = remaining - v.ticks
                table = self.tables.continuable[voice]
                ok = table[v.pitch.clip(0), np.where(after > 0, after, bar_ticks).clip(0, table.shape[1] - 1)]
                return ok & (after > 0) if last else ok

            mask &= ~ties | self._part(("continuable", voice, remaining, bar_ticks, last), continuable)
            need = self._part(("tied need", voice, remaining, measure_ticks, bar_ticks), lambda: np.where(
                v.tie, np.maximum(need, 2 * self._closing_cost(0, 0, bar_ticks) + 9), need))
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
        masks, judged = [], []  # judged: (row, RulesDue) of the rows the rules judge together
        tables = None
        for row, constraint in enumerate(self.constraints):
            mask = constraint.grammar_allowed()
            due = constraint.rules_due(mask)
            if due is not None:
                tables = constraint.music.t if tables is None else tables
                if constraint.music.t is tables and \
                        batched.BatchRules.covers(constraint.music, due.last_measure, due.before_following):
                    judged.append((row, due))
                else:
                    mask = constraint.apply_rules(mask, due)
            masks.append(mask)
        verdict = None
        if 0 < len(judged) < batched.TOGETHER:  # too few rows to pay for the arrays: each judged alone
            for row, due in judged:
                masks[row] = self.constraints[row].apply_rules(masks[row], due)
            judged = []
        if judged:
            verdict = batched.batch_rules(tables).judge([(self.constraints[row].music, masks[row], due.measure_ticks)
                                                        for row, due in judged])
            for index in verdict.stuck:  # every candidate breaks a hard rule: choose drops rules, alone
                row, due = judged[index]
                masks[row] = self.constraints[row].apply_rules(masks[row], due)
        rows, penalties, grammar_rows = [], [], []
        for constraint, mask in zip(self.constraints, masks):
            rows.append(self.after_end if constraint.finished else mask)
            penalties.append(None if constraint.finished else constraint.penalty)
            if constraint.weigh_steps:  # the rules only narrow: a judged row's mask is its grammar's
                grammar_rows.append(self.after_end if constraint.finished else constraint.grammar_mask | mask)
        self.grammar_allowed = np.stack(grammar_rows) if grammar_rows else None  # for particle weights
        allowed = np.stack(rows)
        weighed = None
        if verdict is not None:
            judged_rows = np.array([row for row, _ in judged])
            allowed[judged_rows[verdict.forbidden_rows], verdict.forbidden_ids] = False
            if len(verdict.penalty):
                weighed = (judged_rows[verdict.weighed_rows], verdict.weighed_ids, verdict.penalty)
        width = scores.shape[1]
        if weighed is not None or any(p is not None for p in penalties):  # soft rules
            size = min(allowed.shape[1], width)
            penalty = np.zeros((len(penalties), width), dtype=np.float32)
            for row, row_penalty in enumerate(penalties):
                if row_penalty is not None:
                    penalty[row, :size] = row_penalty[:size]
            if weighed is not None:
                inside = weighed[1] < width
                penalty[weighed[0][inside], weighed[1][inside]] = weighed[2][inside]
            scores = scores - torch.from_numpy(penalty).to(scores.device, scores.dtype)
        forbidden = np.logical_not(allowed)
        if forbidden.shape[1] < width:  # a model's vocabulary may be padded beyond its tokenizer's (Pythia's is)
            forbidden = np.pad(forbidden, ((0, 0), (0, width - forbidden.shape[1])), constant_values=True)
        return scores.masked_fill(torch.from_numpy(forbidden[:, :width]).to(scores.device), float("-inf"))
