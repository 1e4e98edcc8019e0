"""music21 score -> Piece: which parts, staves and voices are encoded, and what is kept of each
event. What cannot be kept is counted in EncodeStats (see the language's page for the list)."""
from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from fractions import Fraction

from scorelm.language.piece import Event, Measure, Piece
from scorelm.language.tokens import MAX_STAVES, MAX_VOICES, MAX_VOICES_PER_STAFF, bar_length, pitch_rank

VOCAL_PART_WORDS = ("soprano", "sopran", "canto", "alto", "alt", "tenor", "tenore", "bass", "basso",
                    # the part books of Renaissance polyphony (Monteverdi's fifth voice is the Quinto)
                    "cantus", "superius", "discantus", "altus", "contratenor", "bassus", "quinto", "quintus",
                    "sesto", "sextus", "septimo", "septimus", "vagans")
SATB_NAMES = ("Soprano", "Alto", "Tenor", "Bass")


@dataclass
class EncodeStats:
    """What the encoder had to drop or fill in, by kind (ideally all zero)."""
    counts: Counter = field(default_factory=Counter)


def _is_vocal_name(name: str | None) -> bool:
    if not name:
        return False
    first = re.split(r"[\s\d.,]+", name.strip().lower(), maxsplit=1)[0]
    return first in VOCAL_PART_WORDS


# What becomes of the parts beside the voices where some parts are named as voices: "voices"
# drops them all (the chorales' rule: the dataset is their four-part vocal texture, and their
# 127 instrumental parts are colla parte or obbligato: trumpets, horns, timpani, violins);
# "doubling" drops only a part that doubles a voice (colla parte) and keeps the others (a
# choir's piano), "all" keeps every part.
INSTRUMENTS = ("doubling", "voices", "all")
# An instrument's staff doubles a voice when at least this share of its onsets fall on that
# voice's onsets with a pitch class in common (octaves apart count: a violin an octave above).
DOUBLING_SHARE = 0.8


def select_parts(score, instruments: str = "voices", stats: EncodeStats | None = None) -> list:
    """The staves to encode, in score order (top to bottom): the vocal parts by name and the
    instrument staves that `instruments` keeps beside them (INSTRUMENTS), or every staff where
    none is named as a voice. music21 gives each staff of a piano its own PartStaff."""
    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    vocal = [part for part in parts if _is_vocal_name(part.partName)]
    if not vocal or instruments == "all":
        return parts
    if instruments == "voices":
        return vocal
    onsets = [_onsets(part) for part in vocal]
    kept = []
    for part in parts:
        if part in vocal or not any(doubles(_onsets(part), voice) for voice in onsets):
            kept.append(part)
        elif stats is not None:
            stats.counts["instrument staves doubling a voice dropped"] += 1
    return kept


def _onsets(part) -> dict[float, set[int]]:
    """The pitch classes that begin at each offset of a staff."""
    found: dict[float, set[int]] = {}
    for element in part.flatten().notes:
        if _is_note_or_rest(element):  # chord symbols are no notes
            found.setdefault(float(element.offset), set()).update(p.pitchClass for p in element.pitches)
    return found


def doubles(staff: dict[float, set[int]], voice: dict[float, set[int]]) -> bool:
    """Whether a staff (its onsets: _onsets) doubles a voice: DOUBLING_SHARE of its onsets on the
    voice's, with a pitch class in common. A staff without notes doubles nothing."""
    if not staff:
        return False
    shared = sum(1 for at, classes in staff.items() if classes & voice.get(at, set()))
    return shared >= DOUBLING_SHARE * len(staff)


def group_staves(score, staves: list) -> list[list]:
    """The staves grouped into parts: the PartStaffs that music21 made of one multi-staff part
    (a piano's, an organ's) stay together, every other staff is a part of its own."""
    from music21 import layout, stream
    group_of = {}
    if hasattr(score, "getElementsByClass"):
        for number, group in enumerate(score.getElementsByClass(layout.StaffGroup)):
            members = group.getSpannedElements()
            if len(members) > 1 and all(isinstance(m, stream.PartStaff) for m in members):
                for member in members:
                    group_of[id(member)] = number
    parts: list[list] = []
    for staff in staves:
        number = group_of.get(id(staff))
        if parts and number is not None and group_of.get(id(parts[-1][-1])) == number:
            parts[-1].append(staff)
        else:
            parts.append([staff])
    return parts


def _spelled(pitch, stats: EncodeStats) -> str:
    modifier = pitch.accidental.modifier if pitch.accidental else ""
    octave = pitch.implicitOctave
    if modifier not in ("", "#", "##", "-", "--") or not 0 <= octave <= 9:
        # microtones, triple accidentals and extreme octaves are not in the language
        stats.counts["pitches respelled or clamped to the language's range"] += 1
        from music21 import pitch as m21pitch
        simple = m21pitch.Pitch(ps=min(max(round(pitch.ps), 12), 119))
        modifier, octave = (simple.accidental.modifier if simple.accidental else ""), simple.implicitOctave
        return f"{simple.step}{modifier.replace('-', 'b')}{octave}"
    return f"{pitch.step}{modifier.replace('-', 'b')}{octave}"


def _measures_of(part) -> list:
    from music21 import stream
    measures = list(part.getElementsByClass(stream.Measure))
    if not measures:
        measures = list(part.makeMeasures().getElementsByClass(stream.Measure))
    return measures


@functools.lru_cache(maxsize=4096)
def _quarters(value) -> Fraction:
    """music21 offsets and lengths (floats, or Fractions for tuplets) as exact Fractions."""
    return Fraction(value)


@dataclass
class _ScannedMeasure:
    """One staff's measure: its voices' events (None: the voice is absent) and where each ends."""
    voices: list[list[Event] | None]
    lengths: list[Fraction]
    sharps: int | None  # key signature at the measure's start, if any
    time: str | None  # time signature at the measure's start, if any


def _is_tied_onward(note) -> bool:
    return note.tie is not None and note.tie.type in ("start", "continue")


def tied_onward(element, members: list) -> list[bool]:
    """Which notes of a note or chord are tied onward: each chord note's own tie where any has
    one (music21 also reports a chord tied when one of its notes is), else the chord's."""
    if any(member.tie is not None for member in members if member is not element):
        return [_is_tied_onward(member) for member in members]
    return [_is_tied_onward(element)] * len(members)


# How far a file's timing may be from the notation's and still be read as the notation: MusicXML
# stores durations in whole divisions of a quarter (Schubert's Lindenbaum: 256, so a triplet
# eighth is 85, not 85 1/3), which music21 reads as they are.
TIMING_TOLERANCE = Fraction(1, 64)


def notated_length(element) -> Fraction:
    """A note's or rest's length as its notation states it (type, dots, tuplets), where that is
    within TIMING_TOLERANCE of the length the file gives; else the file's length. 0 for a grace
    note."""
    from music21 import duration as m21duration
    written = element.duration
    if written.isGrace:
        return Fraction(0)
    actual = _quarters(written.quarterLength)
    if written.type in ("complex", "zero", "inexpressible") or not written.type:
        return actual
    value = Fraction(m21duration.convertTypeToQuarterLength(written.type, written.dots))
    for tuplet in written.tuplets:
        value *= Fraction(tuplet.tupletMultiplier())
    return value if abs(value - actual) < TIMING_TOLERANCE else actual


def timed_elements(container, elements) -> list[tuple[Fraction, Fraction, object]]:
    """(offset, notated length, element) of one voice's notes and rests in order. An offset within
    TIMING_TOLERANCE of where the notes before it end is read as that place (the file's rounding)."""
    out, position = [], Fraction(0)
    for element in elements:
        # elementOffset, not .offset: the latter follows whichever stream last held the element
        offset = _quarters(container.elementOffset(element))
        if abs(offset - position) < TIMING_TOLERANCE:
            offset = position
        length = notated_length(element)
        out.append((offset, length, element))
        position = max(position, offset + length)
    return out


def voice_containers(measure) -> list[tuple[object, list]]:
    """A staff's measure as voices: (container, its notes and rests). The notes outside any
    music21 Voice are the first voice."""
    from music21 import stream
    voices, loose = [], []
    for element in measure.elements:
        if _is_note_or_rest(element):
            loose.append(element)
        elif isinstance(element, stream.Voice):
            voices.append(element)
    return ([(measure, loose)] if loose or not voices else []) + \
        [(v, [e for e in v.elements if _is_note_or_rest(e)]) for v in voices]


def _is_note_or_rest(element) -> bool:
    """Notes, chords and rests; not chord symbols (music21 makes lead-sheet labels such as 'D7'
    chords of no duration: harmony, not notes)."""
    from music21 import harmony, note
    return isinstance(element, note.GeneralNote) and not isinstance(element, harmony.Harmony) \
        and (element.duration.isGrace or element.duration.quarterLength > 0)


def _event(element, duration: Fraction, stats: EncodeStats) -> Event:
    """A note, chord or rest as an Event: a chord highest note first, one tie per note."""
    from music21 import chord, expressions, note
    fermata = any(isinstance(e, expressions.Fermata) for e in element.expressions)
    grace = element.duration.isGrace
    if isinstance(element, note.Rest) or not getattr(element, "pitches", ()):
        if not isinstance(element, note.Rest):
            stats.counts["unpitched notes (percussion) as rests"] += 1
        return Event(None, duration, False, fermata)
    members = [n for n in element.notes if hasattr(n, "pitch")] if isinstance(element, chord.ChordBase) else [element]
    ties = tied_onward(element, members)
    notes: dict[str, bool] = {}
    for member, tied in zip(members, ties):
        spelled = _spelled(member.pitch, stats)
        if spelled in notes:
            stats.counts["notes doubled in one chord merged"] += 1
        notes[spelled] = notes.get(spelled, False) or tied
    if grace and any(notes.values()):
        stats.counts["ties from grace notes dropped"] += 1
    if grace and fermata:
        stats.counts["fermatas on grace notes dropped"] += 1
    ordered = sorted(notes, key=pitch_rank, reverse=True)
    ties = {pitch: (tied and not grace) for pitch, tied in notes.items()}
    return Event(ordered[0], duration, ties[ordered[0]], fermata and not grace, grace,
                 tuple((pitch, ties[pitch]) for pitch in ordered[1:]))


def writable(piece: Piece) -> Piece:
    """The piece with every event of a length no single note value writes split as the encoder
    reads it from a file (a note into tied notes, a rest into rests): what a score of the piece,
    or its MusicXML file, encodes to."""
    return Piece([replace(m, voices=[[part for event in events for part in _split(event)] for events in m.voices])
                  for m in piece.measures], piece.parts)


def _rests(length: Fraction) -> list[Event]:
    """Rests filling a gap: one per note value music21 splits the length into (2.5 quarters: a
    half and an eighth), as a MusicXML file will hold them."""
    return _split(Event(None, length))


def _scan_voice(container, elements, stats: EncodeStats) -> tuple[list[Event], Fraction]:
    events, position = [], Fraction(0)
    for offset, length, element in timed_elements(container, elements):
        if offset < position:
            stats.counts["overlapping notes in a voice dropped"] += 1
            continue
        if offset > position:
            stats.counts["gaps filled with rests"] += 1
            events.extend(_rests(offset - position))
        event = _event(element, length, stats)
        position = offset + event.duration
        events.extend(_split(event))
    return events, position


def _split(event: Event) -> list[Event]:
    """An event of a length no single note value writes (5 quarters, 2.5) as the tied notes (or
    rests) of the values music21 splits it into, as a MusicXML file holds it; the fermata on the
    last."""
    from music21 import duration
    if event.grace or duration.Duration(event.duration).type != "complex":
        return [event]
    lengths = [_quarters(c.quarterLength) for c in duration.Duration(event.duration).components]
    if sum(lengths) != event.duration:
        return [event]
    out = []
    for number, length in enumerate(lengths, 1):
        last = number == len(lengths)
        out.append(replace(event, duration=length, fermata=event.fermata and last,
                           tie=event.tie if last else event.pitch is not None,
                           chord=event.chord if last else tuple((pitch, True) for pitch, _ in event.chord)))
    return out


def _scan_measure(measure, stats: EncodeStats) -> _ScannedMeasure:
    """One pass over a staff's measure: its signatures and its voices' events. The notes outside
    any music21 Voice are the first voice; a voice after the first with no note is absent."""
    from music21 import key, meter
    sharps = time = None
    for element in measure.elements:
        if measure.elementOffset(element) == 0:
            if sharps is None and isinstance(element, key.KeySignature):
                sharps = element.sharps
            elif time is None and isinstance(element, meter.TimeSignature):
                time = element.ratioString
    containers = voice_containers(measure)
    if len(containers) > MAX_VOICES_PER_STAFF:
        stats.counts["voices beyond a staff's limit dropped (measures)"] += 1
        containers = containers[:MAX_VOICES_PER_STAFF]
    scanned, lengths = [], []
    for number, (container, elements) in enumerate(containers):
        events, length = _scan_voice(container, elements, stats)
        if number > 0 and not any(e.pitch for e in events):
            events, length = None, Fraction(0)  # only rests (often hidden): the voice is absent
        scanned.append(events)
        lengths.append(length)
    while len(scanned) > 1 and scanned[-1] is None:
        scanned.pop()
        lengths.pop()
    return _ScannedMeasure(scanned, lengths, sharps, time)


def _majority(values: list, what: str, stats: EncodeStats):
    """Parts may disagree on a signature (a source error); the language has one per measure,
    so the value most parts carry wins."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    if len(set(values)) > 1:
        stats.counts[f"parts disagree on the {what} (majority kept)"] += 1
    return Counter(values).most_common(1)[0][0]


def piece_from_score(score, stats: EncodeStats | None = None, instruments: str = "voices") -> Piece:
    """Encode a music21 Score (or a single Part) into a Piece; `instruments`: what becomes of
    the parts beside the voices (INSTRUMENTS)."""
    stats = stats if stats is not None else EncodeStats()
    staves = select_parts(score, instruments, stats)
    dropped = (len(score.parts) if hasattr(score, "parts") else 1) - len(staves)
    if dropped > 0 and instruments == "voices":
        stats.counts["parts not named as voices dropped (instruments beside the voices)"] += dropped
    parts = group_staves(score, staves)
    for part in parts:
        if len(part) > MAX_STAVES:
            stats.counts["staves beyond a part's limit dropped"] += len(part) - MAX_STAVES
            del part[MAX_STAVES:]
    staves = [staff for part in parts for staff in part]
    staff_measures = [_measures_of(staff) for staff in staves]
    rows = []
    for index in range(max(len(measures) for measures in staff_measures)):
        row = [measures[index] if index < len(measures) else None for measures in staff_measures]
        if any(m is None for m in row):
            stats.counts["measures missing in a part (filled with rests)"] += 1
        rows.append([_ScannedMeasure([[]], [Fraction(0)], None, None) if m is None else _scan_measure(m, stats)
                     for m in row])
    # voices per staff: as many as its fullest measure has, within the language's limit
    counts = [max(len(row[number].voices) for row in rows) for number in range(len(staves))]
    while sum(counts) > MAX_VOICES:
        stats.counts["voices beyond the piece's limit dropped"] += 1
        counts[counts.index(max(counts))] -= 1
    piece, current_key, current_time = Piece(), None, None
    layout, number = [], 0
    for part in parts:
        layout.append(tuple(counts[number:number + len(part)]))
        number += len(part)
    if any(len(staves_) > 1 or max(staves_) > 1 for staves_ in layout):
        piece.parts = tuple(layout)
    for index, row in enumerate(rows):
        sharps = _majority([s.sharps for s in row], "key signature", stats)
        time = _majority([s.time for s in row], "time signature", stats)
        voices, lengths = [], []
        for scanned, count in zip(row, counts):
            got = scanned.voices[:count] + [None] * (count - len(scanned.voices))
            voices.extend(got)
            lengths.extend((scanned.lengths + [Fraction(0)] * count)[:count])
        measure = Measure(length=Fraction(0), voices=[])
        if sharps is not None and sharps != current_key:
            current_key = measure.key = sharps
        if time is not None and time != current_time:
            current_time = measure.time = time
        if index == 0:
            if current_key is None:
                stats.counts["no key signature (K:0 assumed)"] += 1
                current_key = measure.key = 0
            if current_time is None:
                stats.counts["no time signature (T:4/4 assumed)"] += 1
                current_time = measure.time = "4/4"
        content = max(lengths)
        measure.length = content if content > 0 else bar_length(current_time)
        for events, length in zip(voices, lengths):
            if events is None:
                measure.voices.append([])
                continue
            if length < measure.length:
                if events:
                    stats.counts["underfull voices padded with rests"] += 1
                events.extend(_rests(measure.length - length))
            if not events:
                events.extend(_rests(measure.length))
            measure.voices.append(events)
        piece.measures.append(measure)
    _drop_bad_ties(piece, stats)
    return piece


def _drop_bad_ties(piece: Piece, stats: EncodeStats) -> None:
    """A tie must lead to the same pitch in the voice's next event (the grammar's rule); the
    source may disagree (a tie into a rest, a grace note, another pitch, or a voice that is absent
    from the next measure)."""
    for voice in range(piece.num_voices):
        previous: tuple[list[Event], int] | None = None  # the voice's last event, as (list, index)
        for measure in piece.measures:
            events = measure.voices[voice]
            if not events and previous is not None:
                _untie(previous, set(), stats)
                previous = None
            for i, event in enumerate(events):
                if previous is not None:
                    _untie(previous, set() if event.grace else set(event.pitches), stats)
                previous = (events, i)
        if previous is not None:
            _untie(previous, set(), stats)


def _untie(located: tuple[list[Event], int], following: set[str], stats: EncodeStats) -> None:
    """Drop the event's ties onward to pitches the following event does not sound."""
    events, i = located
    event = events[i]
    keep = lambda pitch, tie: tie and pitch in following
    untied = replace(event, tie=keep(event.pitch, event.tie),
                     chord=tuple((pitch, keep(pitch, tie)) for pitch, tie in event.chord))
    if untied != event:
        stats.counts["ties to a different pitch or nothing dropped"] += 1
        events[i] = untied


def encode_score(score, stats: EncodeStats | None = None, instruments: str = "voices") -> str:
    return piece_from_score(score, stats, instruments).to_text()
