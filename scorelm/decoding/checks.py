"""The rules' checks: for one step's candidate notes and rests of the voice being written, which
break each rule (one check per rule, CHECKS; rules.py says what each rule is and why), and the
candidates' facts the checks read, looked up once per grammar mask (CandidateSet) and worked
out once per step (Candidates). The `music` each check reads is voice_leading.VoiceLeading (the
music they judge against) and `t` its RuleTables: named, not imported, as voice_leading imports
this module."""
from __future__ import annotations

import numpy as np

from scorelm.decoding.rules import RULE_NAMES, interval_class_of


class CandidateSet:
    """The notes and rests a grammar mask allows, and what the checks read of each (MIDI number,
    length, letter, alteration, ...): looked up once per mask, not per row and step (masks are
    shared by grammar state, so the same few hundred serve a whole batch)."""

    def __init__(self, t, mask: np.ndarray | None, ids: np.ndarray | None = None):
        self.mask = mask
        self.ids = t.candidate_ids(mask) if ids is None else ids
        self.midi = t.pitch_midi[self.ids]
        self.note = t.is_note[self.ids]
        self.ticks = t.ticks[self.ids]
        self.letter = t.step[self.ids] % 7
        self.alteration = t.alteration[self.ids]
        self.fermata = t.fermata[self.ids]
        self.pitch_index = t.pitch_index[self.ids]
        self.out_of_range: dict[int, np.ndarray] = {}  # by voice (voice_range)
        self._clashing: dict[frozenset, np.ndarray] = {}  # by spellings sounding (chromatic_clash)

    def clashing(self, spellings: frozenset) -> np.ndarray:
        """Which candidates have the letter of one of `spellings` ((letter, alteration) pairs)
        but another alteration (chromatic_clash), worked out once per set of spellings."""
        found = self._clashing.get(spellings)
        if found is None:
            found = np.zeros(len(self.ids), dtype=bool)
            for letter, alteration in spellings:
                found |= (self.letter == letter) & (self.alteration != alteration)
            self._clashing[spellings] = found
        return found


class Candidates:
    """One step's candidate notes and rests of the current voice, and what the checks read of
    them; what two checks share (consecutive intervals, the voice above's compass) is worked out
    once, when the first of them asks."""

    def __init__(self, music, chosen_from: CandidateSet, measure_ticks: int, last_measure: bool,
                 fillable: np.ndarray):
        v = music.voice
        self.music, self.set, self.voice = music, chosen_from, v
        self.ids, self.midi, self.note, self.ticks = chosen_from.ids, chosen_from.midi, chosen_from.note, chosen_from.ticks
        self.measure_ticks, self.last_measure, self.fillable = measure_ticks, last_measure, fillable
        events = music.current[v]
        self.onset = events[-1].end if events else 0
        self.previous = music._previous(v, self.onset)  # this voice's event before the candidate
        self.before_following = False  # an infilled passage's last measure (VoiceLeading.broken)
        self.kept_below = music._kept_below(v)  # infilling some voices: the kept voices below, by voice
        self._consecutive = self._compass = None

    def none(self) -> np.ndarray:
        return np.zeros(len(self.ids), dtype=bool)

    def sounding_with(self, event) -> np.ndarray:
        """Which candidates sound while a (kept) voice's note does."""
        return self.note & (event.start < self.onset + self.ticks) & (event.end > self.onset)

    def consecutive(self) -> tuple[np.ndarray, np.ndarray]:
        """Which candidates make consecutive fifths, and which octaves, with a voice above."""
        if self._consecutive is None:
            music, t, v, onset = self.music, self.music.t, self.voice, self.onset
            fifths, octaves = self.none(), self.none()
            previous = self.previous
            if previous is not None and previous.midi is not None:
                moves = self.note & (self.midi != previous.midi)
                for upper in range(v):
                    upper_before, upper_now = music._previous(upper, onset), music._at(upper, onset)
                    if upper_before is None or upper_now is None or upper_before.midi is None \
                            or upper_now.midi is None or upper_now.midi == upper_before.midi:
                        continue  # a rest, or the upper voice holds: no parallel motion
                    was = interval_class_of(upper_before.midi, upper_before.step, previous.midi, previous.step)
                    if not was:
                        continue
                    now = t.interval_table[upper_now.pitch_index, self.set.pitch_index]
                    (fifths if was == 5 else octaves)[moves & (now == was)] = True
                for lower, events in self.kept_below.items():
                    lower_before, lower_now = music._previous(lower, onset, events), music._at(lower, onset, events)
                    if lower_before is None or lower_now is None or lower_before.midi is None \
                            or lower_now.midi is None or lower_now.midi == lower_before.midi:
                        continue
                    was = interval_class_of(previous.midi, previous.step, lower_before.midi, lower_before.step)
                    if not was:
                        continue
                    now = t.interval_table[self.set.pitch_index, lower_now.pitch_index]
                    (fifths if was == 5 else octaves)[moves & (now == was)] = True
            if self.before_following:
                self._into_following(fifths, octaves)
            self._consecutive = fifths, octaves
        return self._consecutive

    def _into_following(self, fifths: np.ndarray, octaves: np.ndarray) -> None:
        """Consecutive fifths and octaves from a passage's last chord into the music after it:
        a candidate that ends the measure, against each voice above at the measure's end, both
        moving into their first notes after the passage."""
        music, t, v = self.music, self.music.t, self.voice
        next_lower = music.following[v]
        if next_lower is None or next_lower.midi is None:
            return
        moves = self.note & (self.onset + self.ticks == self.measure_ticks) & (self.midi != next_lower.midi)
        if not moves.any():
            return
        kept_below = self.kept_below
        for other in list(range(v)) + list(kept_below):
            other_last = music._at(other, self.measure_ticks - 1, kept_below.get(other))
            other_next, above = music.following[other], other < v
            if other_last is None or other_next is None or other_last.midi is None or other_next.midi is None \
                    or other_next.midi == other_last.midi:
                continue
            upper, lower = (other_next, next_lower) if above else (next_lower, other_next)
            then = interval_class_of(upper.midi, upper.step, lower.midi, lower.step)
            if not then:
                continue
            now = t.interval_table[other_last.pitch_index, self.set.pitch_index] if above \
                else t.interval_table[self.set.pitch_index, other_last.pitch_index]
            (fifths if then == 5 else octaves)[moves & (now == then)] = True

    def compass(self) -> tuple[np.ndarray, np.ndarray]:
        """The lowest and the highest pitch of the voice above that sounds while each candidate does."""
        if self._compass is None:
            onset = self.onset
            span = max(self.measure_ticks - onset, 1)
            low = np.full(span + 1, 10 ** 3)
            high = np.full(span + 1, -10 ** 3)
            for event in self.music._overlapping(self.voice - 1, onset):
                if event.midi is None:
                    continue
                first = max(event.start - onset, 0) + 1
                if first <= span:
                    low[first] = min(low[first], event.midi)
                    high[first] = max(high[first], event.midi)
            low, high = np.minimum.accumulate(low), np.maximum.accumulate(high)
            reach = np.minimum(self.ticks, span)
            self._compass = low[reach], high[reach]
        return self._compass


# One check per rule: the candidates that break it, or None where it does not apply to them.

def parallel_fifths(music, c: Candidates):
    return c.consecutive()[0] if c.voice > 0 else None


def parallel_octaves(music, c: Candidates):
    return c.consecutive()[1] if c.voice > 0 else None


def chromatic_clash(music, c: Candidates):
    # A against A flat at once, in any octaves: Bach writes it at 3 of the 6,681 onsets of his
    # validation and test chorales; the model left alone, at 5 of every 100 beats
    kept = [event for events in c.kept_below.values() for event in events
            if event.end > c.onset and event.midi is not None]  # infilling some voices: the kept ones below
    if c.voice == 0 and not kept:
        return None
    # the candidates clash with a note sounding with them of the same letter (a diatonic step's
    # number mod 7) and another alteration, begun before the candidate ends: those begun by its
    # onset clash whatever its length, looked up by their spellings once a candidate set
    at_onset, later, onset = set(), [], c.onset
    for event in [event for upper in range(c.voice) for event in music._overlapping(upper, onset)] + kept:
        if event.midi is not None:
            if event.start <= onset:
                at_onset.add((event.step % 7, event.alteration))
            else:
                later.append(event)
    clash = c.set.clashing(frozenset(at_onset)) if at_onset else c.none()
    for event in later:
        clash = clash | (c.set.clashing(frozenset([(event.step % 7, event.alteration)])) & (c.ticks > event.start - onset))
    return c.note & clash


def voice_crossing(music, c: Candidates):
    below = c.kept_below.get(c.voice + 1)
    if c.voice == 0 and below is None:
        return None
    crossed = c.note & (c.midi > c.compass()[0]) if c.voice > 0 else c.none()
    for event in below or ():  # a kept voice below (infilling some voices): the candidate above it
        if event.midi is not None:
            crossed |= c.sounding_with(event) & (c.midi < event.midi)
    return crossed


def spacing(music, c: Candidates):
    below = c.kept_below.get(c.voice + 1) if c.voice in (0, 1) else None
    if c.voice == 0 and below is None:
        return None
    wide = (c.note & (c.midi < c.compass()[1] - 12)) if c.voice in (1, 2) else c.none()
    for event in below or ():  # a kept voice below (infilling some voices): more than an octave under the candidate
        if event.midi is not None:
            wide |= c.sounding_with(event) & (c.midi > event.midi + 12)
    return wide


def voice_range(music, c: Candidates):
    out = c.set.out_of_range.get(c.voice)  # the same for every row choosing from this set
    if out is None:
        low_limit, high_limit = music.t.ranges[c.voice]
        out = c.set.out_of_range[c.voice] = c.note & ((c.midi < low_limit) | (c.midi > high_limit))
    return out


def voice_overlap(music, c: Candidates):
    if c.voice == 0:
        return None
    upper_before, upper_now = music._previous(c.voice - 1, c.onset), music._at(c.voice - 1, c.onset)
    previous = c.previous
    if upper_before is not None and upper_now is not None and upper_before.midi is not None \
            and upper_now.midi != upper_before.midi and previous is not None and previous.midi is not None:
        return c.note & (c.midi != previous.midi) & (c.midi > upper_before.midi)
    return c.none()


def rest(music, c: Candidates):
    # under a folk tune's dotted rhythms the model, left alone, rests in eighths for whole
    # measures (its lower voices silent a fifth to nine tenths of the time; Bach's at most a
    # tenth). Not in a free piece: there the sequences whose soprano rests escape the
    # penalty, and the particles kept them (pieces with a soprano silent for measures)
    if c.voice == 0 or music.free:
        return None
    sung = music._at(0, c.onset)
    return ~c.note if sung is not None and sung.midi is not None else c.none()


def fermata(music, c: Candidates):
    if c.voice == 0:
        return None
    soprano = next((e for e in music.current[0] if e.start == c.onset), None)
    wanted = soprano is not None and soprano.fermata
    # nor may a note sound across the onset of a soprano fermata (it could have none there)
    across = c.none()
    for event in music.current[0]:
        if event.fermata and event.start > c.onset:
            across |= c.onset + c.ticks > event.start
    return (c.set.fermata != wanted) | across


def final_chord(music, c: Candidates):
    if not c.last_measure:
        return None
    return music._final_chord_breaks(c.ids, c.onset, c.ticks, c.midi, c.note, c.measure_ticks, c.fillable)


def signature_tonic(music, c: Candidates):
    if not (c.last_measure and music.free and music.key is not None):
        return None
    return music._off_signature_close(c.onset, c.ticks, c.midi, c.note, c.measure_ticks)


CHECKS = {"parallel_fifths": parallel_fifths, "parallel_octaves": parallel_octaves,
          "chromatic_clash": chromatic_clash, "voice_crossing": voice_crossing, "spacing": spacing,
          "range": voice_range, "voice_overlap": voice_overlap, "rest": rest, "fermata": fermata,
          "final_chord": final_chord, "signature_tonic": signature_tonic}
assert set(CHECKS) == set(RULE_NAMES), "every rule in rules.RULES has its check here"
