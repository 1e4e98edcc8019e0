"""The voice-leading rules judged for all rows of a batch at once: one step's verdicts for every
row's candidate notes and rests from a few array operations over the whole batch.

Why not only checks.py: there each row's candidates are judged by numpy calls on a few hundred
candidates, some fifty calls a row and step, and their fixed cost grows with the batch (at batch
64 the rules cost a sixth of the model's own step on two CPU cores). Here each row's music is
read once in plain Python (what sounds at the onset of the note it is choosing, what its voice
sang last, what the voice above does while the note sounds), and the arithmetic runs once for the
whole batch.

checks.py stays the definition. A row this does not cover is judged there: a last measure (the
final chord and the close on the signature's tonic), a row of an infilled passage (the kept
voices and the music after the passage), and a row whose every candidate breaks a hard rule
(hard mode then drops rules one by one). A test holds the two to the same masks and penalties,
row for row and step for step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scorelm.decoding.voice_leading import RuleTables, VoiceLeading

# the fewest rows judged together: below it each row is judged alone, as the arrays' fixed cost
# then outweighs the checks' (2 CPU cores: about equal at four rows)
TOGETHER = 4
FAR = 10 ** 6  # a distance in ticks no candidate reaches: "never"


@dataclass
class RowsMusic:
    """What the checks read of each judged row's music at its onset, as arrays over the rows
    (BatchRules._judge reads it, _verdicts judges by it)."""
    voice: np.ndarray  # the voice choosing (0: the soprano)
    prev_midi: np.ndarray  # its last note before the onset (-FAR: none)
    was: np.ndarray  # [rows, voices above]: the interval class with each voice above that moves (-1: none)
    upper_now: np.ndarray  # ... and that voice's new pitch
    overlap_above: np.ndarray  # voice_overlap: the note the voice above has just left (FAR: none)
    span: np.ndarray  # ticks from the onset to the measure's end (at least 1)
    wanted: np.ndarray  # fermata: the soprano holds one at the onset
    fermata_after: np.ndarray  # ... or begins one this many ticks later (FAR: none)
    sung: np.ndarray  # rest: a given melody sings at the onset
    sounding: tuple[list[int], list[int], list[int]]  # chromatic_clash: (row, spelling code, start) of the upper notes
    compass: list[list[tuple[int, int]]]  # per row, (ticks after the onset + 1, MIDI) of the voice above's notes


class BatchRules:
    """The rules' arrays over the vocabulary's notes and rests (`ids`), and the verdict for a
    batch of rows."""

    def __init__(self, t: RuleTables):
        self.t = t
        pitches = t.interval_table.shape[0]
        sounding = np.flatnonzero(t.pitch_index >= 0)
        pitch = t.pitch_index[sounding]
        self.pitch_of = np.where(t.pitch_index >= 0, t.pitch_index, pitches)  # per id; a rest: a padding column
        # per pitch (and the padding column): MIDI number
        self.pitch_midi = np.full(pitches + 1, -FAR, dtype=np.int64)
        self.pitch_midi[pitch] = t.pitch_midi[sounding]
        # spelling codes: letter * spellings + alteration + most (chromatic_clash: A against A flat)
        alteration = t.alteration[sounding]
        self.most = int(np.abs(alteration).max()) if len(alteration) else 0
        self.spellings = 2 * self.most + 1
        spelling = np.full(pitches + 1, -1, dtype=np.int64)
        spelling[pitch] = (t.step[sounding] % 7) * self.spellings + alteration + self.most
        self.code_of_pitch = np.where(spelling >= 0, spelling, 7 * self.spellings)  # a rest: a column of "never"
        # interval classes [upper, lower], with a padding row and column of 0 (no interval)
        self.interval = np.zeros((pitches + 1, pitches + 1), dtype=np.int8)
        self.interval[:pitches, :pitches] = t.interval_table[:pitches, :pitches]
        self.interval_rows = t.interval_table.tolist()  # for single lookups in the rows' loop
        self.out_of_range = np.zeros((t.num_voices, pitches + 1), dtype=bool)  # by voice and pitch
        if t.ranges:
            for voice, (low, high) in enumerate(t.ranges):
                self.out_of_range[voice, :pitches] = (self.pitch_midi[:pitches] < low) | (self.pitch_midi[:pitches] > high)
        self.width = t.num_voices - 1 or 1  # the most voices above a voice
        # per id, a note's MIDI number; a rest's such that it crosses nothing (midi_or_low) and
        # is spaced from nothing (midi_or_high)
        self.midi_or_low = np.where(t.is_note, t.pitch_midi, -FAR)
        self.midi_or_high = np.where(t.is_note, t.pitch_midi, FAR)

    @staticmethod
    def covers(music: VoiceLeading, last_measure: bool, before_following: bool) -> bool:
        """Whether this module judges the row (else checks.py does)."""
        return not last_measure and not before_following and music.following is None and not music.kept \
            and 0 <= music.voice < music.t.num_voices

    def judge(self, rows: list[tuple[VoiceLeading, np.ndarray, int]]) -> "Verdict":
        """The verdict on (music, grammar mask, measure length in ticks) rows that `covers`
        allows: what VoiceLeading.choose would forbid and weigh in each."""
        candidate_sets = [self.t.candidate_ids(mask) for _, mask, _ in rows]
        chosen = [index for index, ids in enumerate(candidate_sets) if len(ids)]  # a voice's marker or a bar line: no rule
        if len(chosen) < len(rows):
            if not chosen:
                nothing = np.zeros(0, dtype=np.int64)
                return Verdict(nothing, nothing, nothing, nothing, np.zeros(0, dtype=np.float32), [])
            verdict = self._judge([rows[index] for index in chosen], [candidate_sets[index] for index in chosen])
            chosen = np.array(chosen)
            verdict.forbidden_rows, verdict.weighed_rows = chosen[verdict.forbidden_rows], chosen[verdict.weighed_rows]
            verdict.stuck = [int(chosen[index]) for index in verdict.stuck]
            return verdict
        return self._judge(rows, candidate_sets)

    def _judge(self, rows, candidate_sets: list[np.ndarray]) -> "Verdict":
        """judge, on rows that each have a note or rest to choose from (`candidate_sets`)."""
        count, width = len(rows), self.width  # the rows' music at their onsets, as RowsMusic holds it
        voice = np.zeros(count, dtype=np.int64)
        prev_midi = np.full(count, -FAR, dtype=np.int64)
        was = np.full((count, width), -1, dtype=np.int8)
        upper_now = np.full((count, width), len(self.pitch_midi) - 1, dtype=np.int64)
        overlap_above = np.full(count, FAR, dtype=np.int64)
        span = np.ones(count, dtype=np.int64)
        wanted = np.zeros(count, dtype=bool)
        fermata_after = np.full(count, FAR, dtype=np.int64)
        sung = np.zeros(count, dtype=bool)
        sounding_rows: list[int] = []
        sounding_codes: list[int] = []
        sounding_starts: list[int] = []
        compass: list[list[tuple[int, int]]] = []
        for row, (music, _, measure_ticks) in enumerate(rows):
            v = music.voice
            voice[row] = v
            current = music.current
            events = current[v]
            onset = events[-1].end if events else 0
            above = []
            compass.append(above)
            if v == 0:
                continue
            previous = music._previous(v, onset)
            moved_from = previous.midi if previous is not None else None
            if moved_from is not None:
                prev_midi[row] = moved_from
            for upper in range(v):
                upper_before, upper_now_event = music._previous(upper, onset), music._at(upper, onset)
                if upper_before is None or upper_now_event is None or upper_before.midi is None:
                    continue
                if upper == v - 1 and upper_now_event.midi != upper_before.midi and moved_from is not None:
                    overlap_above[row] = upper_before.midi
                if moved_from is None or upper_now_event.midi is None or upper_now_event.midi == upper_before.midi:
                    continue
                interval = self.interval_rows[upper_before.pitch_index][previous.pitch_index]
                if interval:
                    was[row, upper] = interval
                    upper_now[row, upper] = upper_now_event.pitch_index
            for upper in range(v):
                for event in current[upper]:
                    if event.end > onset and event.midi is not None:
                        sounding_rows.append(row)
                        sounding_codes.append((event.step % 7) * self.spellings + event.alteration + self.most)
                        sounding_starts.append(event.start - onset if event.start > onset else -1)
            span[row] = reach = max(measure_ticks - onset, 1)
            for event in current[v - 1]:
                if event.end > onset and event.midi is not None:
                    first = max(event.start - onset, 0) + 1
                    if first <= reach:
                        above.append((first, event.midi))
            for event in current[0]:
                if event.start == onset:
                    wanted[row] = event.fermata
                elif event.fermata and event.start > onset:
                    fermata_after[row] = min(fermata_after[row], event.start - onset)
            if not music.free:
                soprano = music._at(0, onset)
                sung[row] = soprano is not None and soprano.midi is not None
        return self._verdicts(candidate_sets, RowsMusic(voice, prev_midi, was, upper_now, overlap_above, span, wanted,
                                                        fermata_after, sung,
                                                        (sounding_rows, sounding_codes, sounding_starts), compass))

    def _verdicts(self, candidate_sets: list[np.ndarray], music: RowsMusic) -> "Verdict":
        """The arithmetic, on [rows x pitches] tables where a rule reads only a candidate's pitch, and
        on every row's candidates one after another (one flat array) where it reads their length
        too; a flat candidate finds its row's cell in a table by `cell` (np.take: a two-index
        gather costs six times as much)."""
        t = self.t
        count, pitches = len(candidate_sets), len(self.pitch_midi)
        voice, prev_midi, was, upper_now, span = music.voice, music.prev_midi, music.was, music.upper_now, music.span
        sounding = music.sounding
        lengths = [len(ids) for ids in candidate_sets]
        ids = np.concatenate(candidate_sets)
        pitch, ticks = np.take(self.pitch_of, ids), np.take(t.ticks, ids)
        cell = np.repeat(np.arange(0, count * pitches, pitches), lengths) + pitch
        hard = np.zeros((count, pitches), dtype=bool)  # by pitch
        soft = np.zeros((count, pitches), dtype=np.float32)
        flat_hard = np.zeros(len(ids), dtype=bool)  # by candidate
        flat_soft = np.zeros(len(ids), dtype=np.float32)

        def judged(name: str, where: np.ndarray, by_pitch: bool) -> None:
            if name in t.hard:
                (hard if by_pitch else flat_hard)[...] |= where
            else:
                weights = soft if by_pitch else flat_soft
                np.add(weights, np.float32(t.penalty[name]), out=weights, where=where)

        enabled = t.enabled
        if "parallel_fifths" in enabled or "parallel_octaves" in enabled:
            now = self.interval[upper_now]  # [rows, voices above, pitches]
            moves = self.pitch_midi[None, :] != prev_midi[:, None]
            for name, interval in (("parallel_fifths", 5), ("parallel_octaves", 1)):
                if name in enabled:
                    judged(name, ((now == interval) & (was == interval)[:, :, None]).any(1) & moves, True)
        if "chromatic_clash" in enabled:
            # by pitch, how many ticks after the onset a clashing note begins (-1: one sounds at it)
            # the first start per row, letter and alteration; then per pitch the first of its
            # letter with another alteration
            first = np.full((count, 7, self.spellings), FAR, dtype=np.int64)
            np.minimum.at(first.reshape(count, -1), (np.asarray(sounding[0], dtype=np.int64),
                                                     np.asarray(sounding[1], dtype=np.int64)), sounding[2])
            # the first of the other alterations: the smallest, or the second smallest where the
            # smallest is this alteration's alone
            lowest = np.partition(first, 1, axis=2) if self.spellings > 1 else np.concatenate([first, first * 0 + FAR], 2)
            alone = (first == lowest[:, :, :1]) & ((first == lowest[:, :, :1]).sum(2, keepdims=True) == 1)
            other = np.where(alone, lowest[:, :, 1:2], lowest[:, :, :1])
            starts = np.concatenate([other.reshape(count, -1), np.full((count, 1), FAR)], 1)[:, self.code_of_pitch]
            judged("chromatic_clash", ticks > np.take(starts, cell), False)
        if "voice_crossing" in enabled or "spacing" in enabled:
            # the lowest and highest pitch of the voice above that sounds while each candidate does
            longest = int(span.max()) + 1
            low = np.full((count, longest), 10 ** 3, dtype=np.int64)
            high = np.full((count, longest), -10 ** 3, dtype=np.int64)
            for index, events in enumerate(music.compass):
                for first, event_midi in events:
                    low[index, first] = min(low[index, first], event_midi)
                    high[index, first] = max(high[index, first], event_midi)
            reach = np.repeat(np.arange(0, count * longest, longest), lengths) + \
                np.minimum(ticks, np.repeat(span, lengths))
            if "voice_crossing" in enabled:
                judged("voice_crossing", np.take(self.midi_or_low, ids) >
                       np.take(np.minimum.accumulate(low, axis=1), reach), False)
            if "spacing" in enabled:
                judged("spacing", np.repeat((voice == 1) | (voice == 2), lengths) &
                       (np.take(self.midi_or_high, ids) < np.take(np.maximum.accumulate(high, axis=1), reach) - 12), False)
        if "range" in enabled:
            judged("range", self.out_of_range[voice], True)
        if "voice_overlap" in enabled:
            judged("voice_overlap", (self.pitch_midi[None, :] != prev_midi[:, None]) &
                   (self.pitch_midi[None, :] > music.overlap_above[:, None]), True)
        if "rest" in enabled and music.sung.any():
            judged("rest", np.repeat(music.sung, lengths) & (pitch == pitches - 1), False)
        if "fermata" in enabled:
            judged("fermata", np.repeat(voice > 0, lengths) & ((np.take(t.fermata, ids) != np.repeat(music.wanted, lengths)) |
                                                               (ticks > np.repeat(music.fermata_after, lengths))), False)
        bad = flat_hard | np.take(hard, cell)
        penalty = flat_soft + np.take(soft, cell)
        row = np.repeat(np.arange(count), lengths)
        stuck = []
        forbidden = np.flatnonzero(bad)
        if len(forbidden):
            forbidden_per_row = np.bincount(np.take(row, forbidden), minlength=count)
            stuck = np.flatnonzero((forbidden_per_row == np.bincount(row, minlength=count)) & (forbidden_per_row > 0))
            if len(stuck):  # their verdict is choose's, alone: nothing of theirs here
                judged = ~np.isin(row, stuck)
                bad &= judged
                penalty *= judged
                forbidden = np.flatnonzero(bad)
        weighed = np.flatnonzero(penalty)
        return Verdict(np.take(row, forbidden), np.take(ids, forbidden), np.take(row, weighed), np.take(ids, weighed),
                       np.take(penalty, weighed), [int(index) for index in stuck])


@dataclass
class Verdict:
    """The rules' verdict on a batch's judged rows (rows are indices into judge's list): the ids
    each row may not write, the nats off each weighed id's logit, and the rows every candidate
    of which breaks a hard rule (to be judged alone: VoiceLeading.choose drops rules; no ids or
    nats of theirs are here)."""
    forbidden_rows: np.ndarray
    forbidden_ids: np.ndarray
    weighed_rows: np.ndarray
    weighed_ids: np.ndarray
    penalty: np.ndarray
    stuck: list[int]


def batch_rules(t: RuleTables) -> BatchRules:
    """The batch arrays for these rule tables, built once."""
    if t.batch is None:
        t.batch = BatchRules(t)
    return t.batch
