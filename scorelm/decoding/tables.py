"""What the grammar constraint looks up on every step, computed once per vocabulary, number of
voices and voice ranges: which notes each voice may sing, the fewest tokens that fill a stretch
of a measure, which tied notes can be continued, and the cache of masks by grammar state."""
from __future__ import annotations

import numpy as np

from scorelm.decoding.vocabulary import CHORD, NOTE, REST, Vocabulary
from scorelm.language import Kind

UNREACHABLE = 10 ** 6


class DecodingTables:
    """What the constraint looks up on every step, computed once per vocabulary and ranges."""

    def __init__(self, vocabulary: Vocabulary, num_voices: int, voice_ranges=None):
        v = vocabulary
        self.num_voices = num_voices
        longest = max([int(tok.duration / v.tick) for _, tok in v.structural
                       if tok.kind in (Kind.TIME, Kind.LENGTH)] + [int(v.ticks.max()), 1])
        self.in_range = {}
        for number in range(1, num_voices + 1):
            mask = (v.kind == NOTE) | (v.kind == CHORD)
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
            fillers = (v.kind == REST) | (self.in_range[number] & ~v.tie & (v.kind == NOTE) & (v.ticks > 0))
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
        for token_id in np.flatnonzero((v.kind == NOTE) & ~v.grace):
            t = int(v.ticks[token_id])
            rooms = np.arange(t, longest + 1)
            self.continuable[:, v.pitch[token_id], rooms] |= fillable[:, rooms - t]
        self.nothing = np.zeros(v.size, dtype=bool)
        self.cache: dict[tuple, tuple] = {}  # grammar state -> (allowed ids, token budget each needs)
        self.structural: dict[tuple, tuple] = {}  # the same for bar lines, voice markers and headers only
        self.parts: dict[tuple, np.ndarray] = {}  # pieces of a note mask by what they read (ScoreConstraint._note_mask)

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


def decoding_tables(vocabulary: Vocabulary, num_voices: int, voice_ranges=None) -> DecodingTables:
    """The decoding tables (and their mask cache) for these voices, built once per vocabulary."""
    key = ("decoding", num_voices, repr(voice_ranges))
    if key not in vocabulary.derived:
        vocabulary.derived[key] = DecodingTables(vocabulary, num_voices, voice_ranges)
    return vocabulary.derived[key]
