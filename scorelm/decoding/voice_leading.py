"""The voice-leading rules at work in the decoder: per-vocabulary tables, and the per-sequence
state (the music already written, and around an infilled passage the music kept) against which
each candidate note is checked, one check per rule (checks.py; the rules themselves, their
strengths and the reasons for them are in rules.py).

Why a rule can be checked the moment a note is chosen: the language writes a measure's voices top
down (V1 = soprano first), so when voice v chooses a note every voice above it is complete for
the whole measure, and the measure before is complete. A pair of voices moves in parallel only at
an onset of one of them, and if only the upper one moves the motion is oblique; so every
consecutive fifth or octave between voices u < v happens at an onset of v, where this module
sees it. Crossing and spacing involve every upper note that sounds while the candidate does,
and those are known too.

Why the interval arithmetic is written out here rather than asking music21: music21's
VoiceLeadingQuartet is the definition (the evaluation counts with it, and a test checks that
this module agrees with it on every chorale of the corpus), but it builds Interval objects
(tens of microseconds a check), and the decoder must judge every candidate pitch for every row
on every step. Here a spelled pitch is two integers (MIDI number, diatonic step), and one numpy
pass judges all candidates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scorelm import language
from scorelm.decoding.checks import CHECKS, Candidates, CandidateSet
from scorelm.decoding.rules import (RULE_NAMES, RULES, SATB_RANGES, closing_chord, diatonic_step, hard_rules,
                                    interval_class_of, modal_finals, spelled_name, tonic_names, tonic_pitch_classes,
                                    tonic_triad_tones)
from scorelm.decoding.vocabulary import Vocabulary


@dataclass
class _Event:
    start: int
    end: int
    midi: int | None  # None for a rest
    step: int | None
    fermata: bool
    name: str = ""  # spelled pitch without octave ("" for a rest)
    pitch_index: int = -1  # into the vocabulary's pitches
    alteration: int = 0  # sharps (+) or flats (-) against the natural of its letter


class RuleTables:
    """Per-vocabulary arrays the rules read (built once per vocabulary and setting)."""

    def __init__(self, vocabulary: Vocabulary, num_voices: int, mode: str, enabled: tuple[str, ...]):
        v = vocabulary
        self.mode, self.num_voices = mode, num_voices
        four = num_voices == 4
        self.enabled = tuple(name for name in RULE_NAMES if name in enabled
                             and not (name in ("spacing", "range") and not four))
        self.penalty = {rule.name: rule.penalty for rule in RULES}
        self.hard = hard_rules(mode, self.enabled)  # the rules that forbid (the others weigh)
        self.pitch_midi = v.midi  # per id (-1 for non-notes)
        self.step = np.full(v.size, -1, dtype=np.int64)  # diatonic step per id
        self.fermata = np.zeros(v.size, dtype=bool)
        self.name = np.full(v.size, "", dtype=object)  # spelled pitch without octave per id
        for token_id, token in v.symbol.items():
            self.fermata[token_id] = token.fermata
            if token.pitch:
                self.step[token_id] = diatonic_step(token.pitch)
                self.name[token_id] = spelled_name(token.pitch)
        self.is_note = v.midi >= 0
        # sharps (+) or flats (-) of each spelled pitch: A against A flat is one letter, two alterations
        self.alteration = np.where(self.is_note, v.midi - natural_midi(self.step), 0)
        self.pitch_index = v.pitch  # per id: index into v.pitches, -1 for non-notes
        # interval class of every (upper pitch, lower pitch) pair, looked up rather than computed per step
        numbers = [(language.midi_number(p), diatonic_step(p)) for p in v.pitches]
        self.interval_table = np.array([[interval_class_of(um, us, lm, ls) for lm, ls in numbers]
                                        for um, us in numbers] or [[0]], dtype=np.int8)
        self.pitch_class = np.where(self.is_note, v.midi % 12, -1)
        # notes that can end a piece: untied, a quarter or longer, with a fermata (without one, the
        # lower voices' under a given melody whose last note has none)
        closing = self.is_note & ~v.tie & (v.ticks * v.tick >= 1)
        self.final_notes = np.flatnonzero(closing & self.fermata)
        # by whether the closing note holds a fermata (VoiceLeading._closing_fermata; None: either)
        self.final_pools = {True: self.final_notes, False: np.flatnonzero(closing & ~self.fermata),
                            None: np.flatnonzero(closing)}
        self.ticks = v.ticks
        self.timed = v.ticks > 0  # notes and rests
        self.candidates: dict[int, CandidateSet] = {}  # id(mask) -> its notes and rests
        self._candidate_ids: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(mask) -> (mask, candidate_ids)
        self.batch = None  # batched.BatchRules over these tables, built when a batch first needs it
        self.tick = v.tick
        self.ranges = SATB_RANGES if four else None
        # per id of a note or rest, what an _Event of it holds beside its start (read on every one written)
        self.event_facts = {token_id: (int(v.ticks[token_id]), int(v.midi[token_id]) if token.pitch else None,
                                       int(self.step[token_id]) if token.pitch else None, token.fermata,
                                       spelled_name(token.pitch) if token.pitch else "", int(v.pitch[token_id]),
                                       int(self.alteration[token_id]))
                            for token_id, token in v.symbol.items() if token.kind.value in ("note", "rest")}


    def candidate_ids(self, mask: np.ndarray) -> np.ndarray:
        """The ids of the notes and rests a grammar mask allows, once per mask (masks are shared
        by grammar state and kept; one cut near the budget's end now and then is not)."""
        found = self._candidate_ids.get(id(mask))
        if found is None or found[0] is not mask:
            found = (mask, np.flatnonzero(mask & self.timed))
            if len(self._candidate_ids) < 4096:
                self._candidate_ids[id(mask)] = found
        return found[1]


class VoiceLeading:
    """One sequence's music so far, as the rules need it, and the rules' verdict on candidates.

    `broken(candidate_ids, ...)` returns, per enabled rule, which candidates break it. The state
    follows the same tokens as the grammar (`advance`)."""

    def __init__(self, tables: RuleTables):
        self.t = tables
        n = tables.num_voices
        self.current: list[list[_Event]] = [[] for _ in range(n)]
        self.before: list[_Event | None] = [None] * n  # each voice's last event of the previous measure
        self.voice = -1
        self.key: int | None = None
        self.dropped: dict[str, int] = {}  # hard mode: how often each rule had to be dropped
        self.free = True  # no melody is given (signature_tonic weighs only such pieces' closes)
        # infilling: each voice's first event after the passage (the music that must follow it),
        # so that consecutive fifths and octaves into it count (first_chord)
        self.following: list[_Event | None] | None = None
        # infilling some voices: per measure index, the kept voices' events (kept_events), so that
        # a rewritten voice is judged against the kept voices below it too
        self.kept: dict[int, dict[int, list[_Event]]] = {}
        self.measure = -1

    # -- following the text
    def bar(self) -> None:
        for voice, events in enumerate(self.current):
            if events:
                self.before[voice] = events[-1]
        self.current = [[] for _ in range(self.t.num_voices)]
        self.voice = -1
        self.measure += 1

    def advance(self, token, token_id: int) -> None:
        kind = token.kind.value
        if kind == "bar":
            self.bar()
        elif kind == "key":
            if self.key is None:
                self.key = token.number  # the home key: a piece ends in the key it began in
        elif kind == "voice":
            self.voice = token.number - 1
        elif kind in ("note", "rest") and token.duration and 0 <= self.voice < self.t.num_voices:
            # grace notes (no duration) and a chord's further notes take no part in the rules
            events = self.current[self.voice]
            start = events[-1].end if events else 0
            ticks, midi, step, fermata, name, pitch_index, alteration = self.t.event_facts[token_id]
            events.append(_Event(start, start + ticks, midi, step, fermata, name, pitch_index, alteration))

    def _kept_below(self, voice: int) -> dict[int, list[_Event]]:
        """The kept voices below `voice` in this measure, with their events (kept_events)."""
        kept = self.kept.get(self.measure)
        return {lower: events for lower, events in kept.items() if lower > voice} if kept else {}

    # -- what sounds when
    def _previous(self, voice: int, at: int, events: list[_Event] | None = None) -> _Event | None:
        """The voice's event sounding just before `at` (this measure's, or the last one before
        it); `events`: the voice's events in this measure where they are known before it is
        written (a kept voice)."""
        for event in self.current[voice] if events is None else events:
            if event.start < at <= event.end:
                return event
        return self.before[voice] if at == 0 else None

    def _at(self, voice: int, at: int, events: list[_Event] | None = None) -> _Event | None:
        for event in self.current[voice] if events is None else events:
            if event.start <= at < event.end:
                return event
        return None

    def _overlapping(self, voice: int, start: int) -> list[_Event]:
        return [e for e in self.current[voice] if e.end > start]

    # -- the verdict
    def broken(self, ids, measure_ticks: int, last_measure: bool, fillable: np.ndarray,
               before_following: bool = False) -> dict[str, np.ndarray]:
        """For candidate note/rest ids of the current voice (an array, or a CandidateSet): which
        enabled rules each breaks (a rule that does not apply here, as a rule between voices to
        the soprano, has no entry). `fillable[r]`: whether the voice can fill r ticks (the
        grammar's tables). `before_following`: this is an infilled passage's last measure, and a
        note that ends it moves into the music after it (first_chord)."""
        out: dict[str, np.ndarray] = {}
        chosen_from = ids if isinstance(ids, CandidateSet) else CandidateSet(self.t, None, np.asarray(ids))
        if self.voice < 0 or not len(chosen_from.ids):
            return out
        candidates = Candidates(self, chosen_from, measure_ticks, last_measure, fillable)
        candidates.before_following = before_following and self.following is not None
        for name in self.t.enabled:
            where = CHECKS[name](self, candidates)
            if where is not None:
                out[name] = where
        return out

    def _off_signature_close(self, onset, ticks, midi, note, measure_ticks) -> np.ndarray:
        """signature_tonic in a last measure: the closing notes (those sounding at the final
        chord) that belong to no tonic chord of the signature: the bass off its major and minor
        tonic, an upper voice off their triads (the minor's with either third: a Picardy close
        is a close on the tonic)."""
        v, n = self.voice, self.t.num_voices
        major, minor = tonic_pitch_classes(self.key)
        if v == n - 1 and n > 1:
            good = [major, minor]
        else:
            good = sorted(tonic_triad_tones(self.key) | {(minor + 4) % 12})
        close_at = measure_ticks if v == 0 else self._closing_soprano(measure_ticks)[1]
        closing = note & (onset < close_at) & (onset + ticks >= close_at)
        return closing & ~np.isin(midi % 12, good)

    def closing_bass(self) -> str:
        """The spelled name of the bass's last note in this measure ("" if it has none)."""
        bass = self._last_note(self.t.num_voices - 1)
        return bass.name if bass is not None else ""

    def closes_off_signature(self) -> bool:
        """signature_tonic at the piece's end: the bass's last note is not on the signature's
        major or minor tonic (spelled as that tonic)."""
        return self.key is not None and self.closing_bass() not in tonic_names(self.key)

    def _final_roots(self, soprano: _Event | None) -> dict[int, str]:
        """Roots a final chord may have under this soprano note, pitch class -> spelling: a tonic
        of the home key signature whose triad holds the note, or the note itself where it is a
        modal final (Dorian, Phrygian and Mixolydian chorale melodies close on their final: an E
        Phrygian chorale ends on E under a signature of C or A minor). The same endings the
        evaluation counts as tonic, for Bach and for samples alike. Spelled: a C-flat bass is no
        B-minor close."""
        soprano_pc = None if soprano is None or soprano.midi is None else soprano.midi % 12
        roots = {}
        for root, name in zip(tonic_pitch_classes(self.key), tonic_names(self.key)):
            if soprano_pc is None or (soprano_pc - root) % 12 in (0, 3, 4, 7):
                roots[root] = name
        if soprano_pc is not None and soprano_pc in modal_finals(self.key):
            roots[soprano_pc] = soprano.name
        return roots

    def _final_chord_breaks(self, ids, onset, ticks, midi, note, measure_ticks, fillable) -> np.ndarray:
        """In the last measure: each voice ends on a note of a tonic chord with a fermata (the
        bass's the chord's root, consonant with the voices above, and the third sounding: the
        voice just above the bass takes it if no voice above has); the lower voices' last notes
        begin and end with the soprano's, and where a given melody rests after its last note (bwv261
        closes B4:2^ R:1) they rest with it rather than strike a second chord under its rest. Looks
        ahead so as never to write itself into a corner: a note that does not end the voice must
        leave room that some final note can close (`fillable`: per remaining tick count, whether
        the voice can fill it)."""
        v, n, t = self.voice, self.t.num_voices, self.t
        end = onset + ticks
        pcs = np.where(note, midi % 12, -1)
        soprano, close_at = self._closing_soprano(measure_ticks) if v > 0 else (None, measure_ticks)
        fermata = self._closing_fermata(soprano)
        if v == 0:  # the soprano: a tonic chord's note or a modal final, a quarter or longer
            good = tonic_triad_tones(self.key) | set(modal_finals(self.key))
        else:
            roots = self._final_roots(soprano)
            if v == n - 1:
                uppers = [e.midi % 12 for e in map(self._last_note, range(n - 1)) if e is not None]
                good = {root for root in roots if closing_chord(root, uppers, n)}
                spelled_right = np.isin(t.name[ids], [roots[root] for root in good])
            else:  # an inner voice: a note of a triad that holds the finals above and whose root the bass can write
                above = {e.midi % 12 for e in map(self._last_note, range(v)) if e is not None}
                # the voice just above the bass is the last that can sound the third (Bach's closes
                # lack it in 2 of 403 chorales)
                completes = v == n - 2
                good = set()
                for root, name in roots.items():
                    if soprano is not None and not self._bass_can_close(name, close_at - soprano.start, fermata):
                        continue
                    for third in (3, 4):
                        triad = {root, (root + third) % 12, (root + 7) % 12}
                        if above <= triad:
                            good |= {(root + third) % 12} if completes and (root + third) % 12 not in above else triad
        pool = t.final_pools[fermata]
        finals = pool[np.isin(t.pitch_class[pool], sorted(good))]
        if t.ranges:
            low, high = t.ranges[v]
            finals = finals[(t.pitch_midi[finals] >= low) & (t.pitch_midi[finals] <= high)]
        if v > 0 and soprano is not None:  # the final note begins with the soprano's
            finals = finals[t.ticks[finals] == close_at - soprano.start]
        lengths = sorted({int(x) for x in t.ticks[finals]})
        after = np.asarray(onset >= close_at)  # the soprano rests after its last note: so does this voice
        closing = ~after & (end >= close_at)
        with_fermata = True if fermata is None else t.fermata[ids] == fermata
        is_final = closing & (end == close_at) & note & with_fermata & np.isin(pcs, sorted(good)) \
            & np.isin(ticks, lengths)
        if v == n - 1 and v > 0:
            is_final &= spelled_right
        # room after a note that is not the last: some final length f with the gap before it fillable
        room = close_at - end
        leaves_room = np.zeros(len(ids), dtype=bool)
        for length in lengths:
            gap = room - length
            inside = (gap >= 0) & (gap < len(fillable))
            leaves_room |= inside & fillable[np.clip(gap, 0, len(fillable) - 1)]
        return ~np.where(after, ~note, np.where(closing, is_final, leaves_room & (room > 0)))

    def _closing_fermata(self, soprano: _Event | None) -> bool | None:
        """Whether this voice's closing note holds a fermata: always where no melody is given;
        under a given melody, as its last note does (a folk tune's has none, and lower voices
        that held a fermata under it would stop where the tune goes on); None for the given
        melody's own last note, whichever it is."""
        if self.free:
            return True
        if self.voice == 0:
            return None
        return soprano is None or soprano.fermata

    def _closing_soprano(self, measure_ticks: int) -> tuple[_Event | None, int]:
        """The soprano's event the final chord sounds under, and the tick where that chord ends:
        its last note and the measure's end, or, where it rests after its last note, that note
        and where the rest begins. A last measure the soprano rests through (seven of Bach's
        chorales close on an instrumental postlude: bwv171.6, bwv248.9-1) closes at its start:
        the lower voices rest with it."""
        events = self.current[0]
        last_note = self._last_note(0)
        if last_note is None:
            return None, (0 if events else measure_ticks)
        if last_note is events[-1]:
            return last_note, measure_ticks
        return last_note, last_note.end

    def _last_note(self, voice: int) -> _Event | None:
        """The voice's last note in this measure (rests after it passed over)."""
        return next((e for e in reversed(self.current[voice]) if e.midi is not None), None)

    def _bass_can_close(self, name: str, length: int, fermata: bool | None) -> bool:
        """Whether the vocabulary holds a final bass note of this spelling and length (with a
        fermata or without, as _closing_fermata says; in range)."""
        t = self.t
        pool = t.final_pools[fermata]
        finals = pool[(t.name[pool] == name) & (t.ticks[pool] == length)]
        if t.ranges:
            low, high = t.ranges[t.num_voices - 1]
            finals = finals[(t.pitch_midi[finals] >= low) & (t.pitch_midi[finals] <= high)]
        return len(finals) > 0

    def end_breaks(self) -> bool:
        """Whether closing the piece now breaks final_chord: every voice's last event a note, each
        voice with a fermata where the soprano's last note begins (under a given melody whose last
        note has none, none; _closing_fermata), the bass on a root from
        _final_roots, consonant below the rest, its third sounding above it (three or more voices)."""
        last = [events[-1] if events else None for events in self.current]
        if any(event is None or event.midi is None for event in last) or (self.free and not last[0].fermata):
            return True
        for voice in range(1, len(last)):
            under = self._at(voice, last[0].start)
            if under is None or under.fermata != last[0].fermata:
                return True
        bass = last[-1].midi % 12
        roots = self._final_roots(last[0])
        return roots.get(bass) != last[-1].name or \
            not closing_chord(bass, [e.midi % 12 for e in last[:-1]], len(last))

    # -- applying the verdict
    def choose(self, mask: np.ndarray, measure_ticks: int, last_measure: bool, fillable: np.ndarray,
               before_following: bool = False):
        """(mask, penalty): the hard rules narrow the mask, the soft ones give nats to take off
        each id's logit (penalty None where no soft rule is broken)."""
        t = self.t
        if self.voice < 0:
            return mask, None
        chosen_from = t.candidates.get(id(mask))
        if chosen_from is None or chosen_from.mask is not mask:  # masks are shared by grammar state: once each
            chosen_from = CandidateSet(t, mask)
            if len(t.candidates) < 65536:
                t.candidates[id(mask)] = chosen_from
        ids = chosen_from.ids
        broken = self.broken(chosen_from, measure_ticks, last_measure, fillable, before_following) if len(ids) else {}
        broken = {name: where for name, where in broken.items() if np.count_nonzero(where)}
        if not broken:
            return mask, None
        penalty = None
        soft = [name for name in broken if name not in t.hard]
        if soft:
            penalty = np.zeros(mask.shape[0], dtype=np.float32)
            for name in soft:
                penalty[ids[broken[name]]] += t.penalty[name]
        names = [name for name in t.enabled if name in broken and name in t.hard]
        while names:
            bad = np.zeros(len(ids), dtype=bool)
            for name in names:
                bad |= broken[name]
            if np.count_nonzero(bad) < len(bad):
                keep = mask.copy()
                keep[ids[bad]] = False
                if keep.any():
                    return keep, penalty
            dropped = names.pop()
            self.dropped[dropped] = self.dropped.get(dropped, 0) + 1
        return mask, penalty



def _followed(tables: RuleTables, words: list[str], vocabulary: Vocabulary) -> VoiceLeading:
    """A VoiceLeading that has followed `words` (one measure's, without its bar line)."""
    music = VoiceLeading(tables)
    for word in words:
        token_id = vocabulary.ids_of[word]
        music.advance(vocabulary.symbol[token_id], token_id)
    return music


def first_chord(tables: RuleTables, words: list[str], vocabulary: Vocabulary) -> list[_Event | None]:
    """Each voice's first event in the music after an infilled passage (`words`, from its bar
    line): what the passage's last notes move into (VoiceLeading.following). Built once a
    passage; every row reads it."""
    end = next((index for index, word in enumerate(words[1:], 1) if word in (language.BAR, language.END)), len(words))
    music = _followed(tables, words[1:end], vocabulary)
    return [music._at(voice, 0) for voice in range(tables.num_voices)]


def kept_events(tables: RuleTables, measures: dict[int, list[list[str]]],
                vocabulary: Vocabulary) -> dict[int, dict[int, list[_Event]]]:
    """The voices an infilled passage keeps, per measure index: from each kept voice's words (its
    V word first), its events by voice (VoiceLeading.kept), against which a rewritten voice's
    notes are judged as against the voices above it. Built once a passage; every row reads it."""
    out = {}
    for index, voices in measures.items():
        music = _followed(tables, [word for words in voices for word in words], vocabulary)
        out[index] = {voice: events for voice, events in enumerate(music.current) if events}
    return out


def natural_midi(step):
    """The MIDI number of a diatonic step's natural (C4, step 28, is 60), for ints or arrays."""
    return 12 * (np.asarray(step) // 7 + 1) + np.array([0, 2, 4, 5, 7, 9, 11])[np.asarray(step) % 7]


def rule_tables(vocabulary: Vocabulary, num_voices: int, mode: str, enabled) -> RuleTables:
    """The rules' tables for this vocabulary and setting, built once."""
    key = ("rules", num_voices, mode, tuple(enabled))
    if key not in vocabulary.derived:
        vocabulary.derived[key] = RuleTables(vocabulary, num_voices, mode, tuple(enabled))
    return vocabulary.derived[key]
