"""A piece as the text describes it: measures of voices of events, and the one place that decides
how a piece is written out as words."""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from scorelm.language.tokens import BAR, END, bar_length, format_duration, midi_number, parts_word


@dataclass(frozen=True)
class Event:
    """One note, chord or rest of one voice. A chord is its highest note (`pitch`) with the notes
    under it in `chord`, highest first, each (pitch, tied onward)."""
    pitch: str | None  # spelled pitch with octave ("C#4", "Bb3"); None for a rest
    duration: Fraction  # 0 for a grace note
    tie: bool = False  # tied to the voice's next note (same pitch)
    fermata: bool = False
    grace: bool = False
    chord: tuple[tuple[str, bool], ...] = ()

    @property
    def text(self) -> str:
        """The event's first word (the rest, the note, or the chord's top note)."""
        head = "R" if self.pitch is None else self.pitch
        if self.grace:
            return f"{head}:0"
        return f"{head}:{format_duration(self.duration)}{'^' if self.fermata else ''}{'~' if self.tie else ''}"

    @property
    def words(self) -> list[str]:
        return [self.text] + [f"+{pitch}{'~' if tie else ''}" for pitch, tie in self.chord]

    @property
    def pitches(self) -> list[str]:
        """Every pitch sounding, highest first (empty for a rest)."""
        return [] if self.pitch is None else [self.pitch] + [pitch for pitch, _ in self.chord]

    @property
    def tied_pitches(self) -> list[str]:
        return ([self.pitch] if self.tie else []) + [pitch for pitch, tie in self.chord if tie]


@dataclass
class Measure:
    length: Fraction  # the measure's actual length in quarter notes
    voices: list[list[Event]]  # per voice; [] for a voice absent from this measure (see Piece.parts)
    key: int | None = None  # key signature (sharps) set at this measure, None = unchanged
    time: str | None = None  # time signature set at this measure, None = unchanged


@dataclass
class Piece:
    measures: list[Measure] = field(default_factory=list)
    # Voices per staff of each part, top to bottom: ((2, 2),) is a piano whose two staves hold two
    # voices each. None: every voice is a part of its own with one staff (a chorale).
    parts: tuple[tuple[int, ...], ...] | None = None

    @property
    def num_voices(self) -> int:
        if self.parts is not None:
            return sum(sum(staves) for staves in self.parts)
        return len(self.measures[0].voices) if self.measures else 0

    @property
    def staves(self) -> list[list[int]]:
        """The voice indices (0-based) on each staff, top staff first."""
        if self.parts is None:
            return [[voice] for voice in range(self.num_voices)]
        out, voice = [], 0
        for staves in self.parts:
            for count in staves:
                out.append(list(range(voice, voice + count)))
                voice += count
        return out

    @property
    def optional_voices(self) -> set[int]:
        """Voices (0-based) that may be absent from a measure: all but the first of each staff."""
        return {voice for staff in self.staves for voice in staff[1:]}

    def top_voice(self) -> "Piece":
        """The piece's top voice alone (its melody), with the same measures and signatures."""
        return Piece([Measure(m.length, m.voices[:1], m.key, m.time) for m in self.measures])

    def excerpt(self, first: int, end: int) -> "Piece":
        """Measures first to end - 1 (0-based) as a piece of their own, its first measure stating
        the key and time signature in force there."""
        keys = [m.key for m in self.measures[:first + 1] if m.key is not None]
        times = [m.time for m in self.measures[:first + 1] if m.time is not None]
        opening = self.measures[first]
        measures = [Measure(opening.length, opening.voices, keys[-1] if keys else None, times[-1] if times else None)]
        return Piece(measures + self.measures[first + 1:end], self.parts)

    def voice_events(self, voice: int) -> list[tuple[Fraction, Event]]:
        """(offset from the start of the piece, event) for one voice."""
        out, start = [], Fraction(0)
        for measure in self.measures:
            offset = start
            for event in measure.voices[voice]:
                out.append((offset, event))
                offset += event.duration
            start += measure.length
        return out

    def annotated_words(self) -> list[tuple[str, tuple | None]]:
        """The piece's words in order, each note, chord note or rest with (voice, measure index,
        offset in the measure, event): for a note under a chord's top one, an Event of its own
        (its pitch and tie, the chord's duration). The one place that decides how a piece is
        written out."""
        words, time = [], None
        for index, measure in enumerate(self.measures):
            words.append((BAR, None))
            if measure.key is not None:
                words.append((f"K:{measure.key}", None))
            if measure.time is not None:
                time = measure.time
                words.append((f"T:{time}", None))
            if index == 0 and self.parts is not None:
                words.extend((parts_word(staves), None) for staves in self.parts)
            if time is None or measure.length != bar_length(time):
                words.append((f"L:{format_duration(measure.length)}", None))
            for number, events in enumerate(measure.voices, 1):
                if not events:
                    continue  # an absent voice
                words.append((f"V{number}", None))
                offset = Fraction(0)
                for event in events:
                    where = (number - 1, index, offset)
                    words.append((event.text, where + (event,)))
                    for pitch, tie in event.chord:
                        member = Event(pitch, event.duration, tie, event.fermata, event.grace)
                        words.append((f"+{pitch}{'~' if tie else ''}", where + (member,)))
                    offset += event.duration
        words.append((END, None))
        return words

    def to_text(self) -> str:
        return " ".join(word for word, _ in self.annotated_words())


def voice_ranges(piece: Piece) -> list[tuple[int, int] | None]:
    """(lowest, highest) MIDI number per voice, chord notes included; None for a voice with only
    rests."""
    ranges = []
    for voice in range(piece.num_voices):
        numbers = [midi_number(p) for m in piece.measures for e in m.voices[voice] for p in e.pitches]
        ranges.append((min(numbers), max(numbers)) if numbers else None)
    return ranges


def paired_measures(piece: Piece, time: str) -> tuple[Piece, list[list[Fraction]]] | None:
    """The piece with each two measures after a pickup written as one measure of `time` (two
    measures of 2/4 as one of 4/4), and the lengths of the measures each one holds, for
    split_measures to write it back. A pickup (a first measure shorter than the others) stands
    alone, as does a last measure left over, so that every measure of `time` begins where an odd
    measure after the pickup did. None where the piece changes key or meter after its first
    measure, or its measures are not two to a measure of `time`."""
    if any(m.key is not None or m.time is not None for m in piece.measures[1:]) or not piece.measures:
        return None
    full = bar_length(piece.measures[0].time) if piece.measures[0].time else None
    if full is None or 2 * full != bar_length(time):
        return None
    groups, index = [], 0
    if piece.measures[0].length < full:
        groups.append([piece.measures[0]])
        index = 1
    groups += [piece.measures[start:start + 2] for start in range(index, len(piece.measures), 2)]
    measures = []
    for number, group in enumerate(groups):
        voices = [[event for measure in group for event in measure.voices[voice]]
                  for voice in range(len(group[0].voices))]
        first = group[0]
        measures.append(Measure(sum((m.length for m in group), Fraction(0)), voices, first.key,
                                time if number == 0 else None))
    return Piece(measures, piece.parts), [[m.length for m in group] for group in groups]


def split_measures(piece: Piece, lengths: list[list[Fraction]], time: str) -> Piece | None:
    """What paired_measures joined, parted again: each measure of the piece cut into measures of
    the given lengths, in the meter `time`. A note sounding across a cut becomes two tied notes
    (its fermata on the first, its own tie on the second), a rest two rests; a grace note at a
    cut goes with the note after it. None where the piece's measures are not those lengths."""
    if len(piece.measures) != len(lengths) or any(m.length != sum(parts, Fraction(0))
                                                  for m, parts in zip(piece.measures, lengths)):
        return None
    measures = []
    for number, (measure, parts) in enumerate(zip(piece.measures, lengths)):
        cut_voices = [[[] for _ in parts] for _ in measure.voices]
        for voice, events in enumerate(measure.voices):
            offset, part, part_end = Fraction(0), 0, parts[0]
            for event in events:
                while part < len(parts) - 1 and offset >= part_end:  # a grace note at a cut goes after it
                    part += 1
                    part_end += parts[part]
                remaining = event
                while offset + remaining.duration > part_end:
                    before = part_end - offset
                    head = Event(remaining.pitch, before, remaining.pitch is not None, remaining.fermata,
                                 False, tuple((pitch, True) for pitch, _ in remaining.chord))
                    cut_voices[voice][part].append(head)
                    offset += before
                    remaining = Event(remaining.pitch, remaining.duration - before, remaining.tie, False,
                                      False, remaining.chord)
                    part += 1
                    part_end += parts[part]
                cut_voices[voice][part].append(remaining)
                offset += remaining.duration
        for index, length in enumerate(parts):
            first = number == 0 and index == 0
            measures.append(Measure(length, [voice[index] for voice in cut_voices],
                                    measure.key if index == 0 else None, time if first else None))
    return Piece(measures, piece.parts)
