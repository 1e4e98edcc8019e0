"""Piece -> music21 score: parts, staves and voices, measures, signatures, pickup, chords, grace
notes, ties and fermatas, ready for MusicXML, MIDI and engraving."""
from __future__ import annotations

from fractions import Fraction

from scorelm.language.encoder import SATB_NAMES
from scorelm.language.piece import Event, Piece
from scorelm.language.tokens import bar_length, music21_pitch_name


def part_names(num_voices: int) -> list[str]:
    return list(SATB_NAMES) if num_voices == 4 else [f"Voice {i}" for i in range(1, num_voices + 1)]


def _written_duration(quarters: Fraction):
    """A music21 Duration of this length that MusicXML can write. For a tuplet music21 may pick a
    unit far shorter than the note (8/17 of a quarter as an eighth under 17:16 of a 256th, 1/17
    under a 2048th, which MusicXML cannot name) or none at all (1/34: 'inexpressible'); the
    tuplet is then stated in the note's own unit: the length's odd factor against the power of
    two below it (17:16), over the note value that makes up the rest (1/34 = a 32nd under 17:16)."""
    from music21 import duration
    written = duration.Duration(quarters)
    if written.type == "complex" or (written.type != "inexpressible" and (
            not written.tuplets or all(t.durationNormal is not None and t.durationNormal.type == written.type
                                       for t in written.tuplets))):
        return written
    odd = quarters.denominator
    while odd % 2 == 0:
        odd //= 2
    normal = 1 << (odd.bit_length() - 1)
    unit = duration.Duration(quarters * odd / normal)
    if odd == 1 or unit.type in ("complex", "inexpressible") or unit.tuplets:
        return written
    plain = duration.Duration(type=unit.type, dots=unit.dots)
    plain.appendTuplet(duration.Tuplet(odd, normal, durationActual=unit.type, durationNormal=unit.type))
    return plain if Fraction(plain.quarterLength).limit_denominator(10 ** 6) == quarters else written


def _element(event: Event, tied_before: set[str], whole_measure: bool = True):
    """The music21 note, chord or rest of one event; `tied_before`: the pitches tied into it."""
    from music21 import chord, expressions, note, tie
    if event.pitch is None:
        element = note.Rest()
        if not whole_measure:
            # a rest filling a measure of another length than its time signature's (L:8 under
            # 2/2) must keep its length: MusicXML's whole-measure rest would take the signature's
            element.fullMeasure = False
    else:
        notes = []
        for pitch, tied in [(event.pitch, event.tie)] + list(event.chord):
            member = note.Note(music21_pitch_name(pitch))
            if tied or pitch in tied_before:
                member.tie = tie.Tie("continue" if tied and pitch in tied_before else "start" if tied else "stop")
            notes.append(member)
        element = notes[0] if len(notes) == 1 else chord.Chord(notes[::-1])  # music21 lists a chord bottom up
    if event.grace:
        return element.getGrace()
    element.duration = _written_duration(event.duration)
    if event.fermata:
        element.expressions.append(expressions.Fermata())
    return element


def score_from_piece(piece: Piece, title: str | None = None, span: tuple[int, int] | None = None):
    """Build a music21 Score: a Part per part of the piece (a PartStaff per staff, braced, for a
    part of several staves), a Voice per voice on a staff that holds several, real Measures,
    signatures, pickup, chords, grace notes, ties, fermatas.

    `span` (first, end): only those measures, each built as in the whole score (its number, the
    ties into it, its clef), the first of them stating the key and time signatures in force, so
    that music21 reads the same context from it (a long piece is written in parallel spans,
    notation.piece_musicxml)."""
    from music21 import key, layout, metadata, meter, stream

    score = stream.Score()
    if title:
        score.metadata = metadata.Metadata(title=title)
    pickup = bool(piece.measures) and piece.measures[0].time is not None and \
        piece.measures[0].length < bar_length(piece.measures[0].time)
    first, end = span or (0, len(piece.measures))
    clefs = staff_clefs(piece) if first == 0 else None
    names = part_names(piece.num_voices) if piece.parts is None else \
        [f"Part {number}" for number, staves in enumerate(piece.parts, 1) for _ in staves]
    layout_staves = [len(staves) for staves in piece.parts] if piece.parts is not None else [1] * piece.num_voices
    # voice -> pitches its last event tied onward
    tied_before: dict[int, set[str]] = _tied_into(piece, first)
    key_in_force, time_in_force = _signatures_in_force(piece, first)
    staff_parts = []
    for number, voices in enumerate(piece.staves):
        several_staves = layout_staves[_part_of(layout_staves, number)] > 1
        part = (stream.PartStaff if several_staves else stream.Part)(id=f"{names[number]}-{number}" if several_staves
                                                                    else names[number])
        part.partName = names[number]
        time = time_in_force
        for index in range(first, end):
            source = piece.measures[index]
            measure = stream.Measure(number=index if pickup else index + 1)
            if index == 0:
                measure.insert(0, clefs[number])
            if source.key is not None or (index == first and key_in_force is not None):
                measure.insert(0, key.KeySignature(key_in_force if source.key is None else source.key))
            if source.time is not None:
                time = source.time
            if source.time is not None or (index == first and time is not None):
                measure.insert(0, meter.TimeSignature(time))
            for order, voice in enumerate(voices):
                events = source.voices[voice]
                if not events:
                    continue  # absent from this measure
                container = measure if len(voices) == 1 else stream.Voice(id=str(order + 1))
                for event in events:
                    container.append(_element(event, tied_before.get(voice, set()),
                                              source.length == bar_length(time)))
                    tied_before[voice] = set(event.tied_pitches)
                if container is not measure:
                    measure.insert(0, container)
            missing = bar_length(time) - source.length
            if missing > 0:
                if index == 0:
                    measure.paddingLeft = missing
                else:
                    measure.paddingRight = missing
            part.append(measure)
        score.insert(0, part)
        staff_parts.append(part)
    first = 0
    for count in layout_staves:
        if count > 1:
            score.insert(0, layout.StaffGroup(staff_parts[first:first + count], symbol="brace", barTogether=True))
        first += count
    return score


def staff_clefs(piece: Piece) -> list:
    """The clef of each staff: a chorale's SATB clefs; otherwise music21's best clef for the
    staff's notes (bestClef), or for a staff of a piano (organ, harp) _keyboard_clef. Judged from
    the whole piece's notes, whichever measures are built."""
    from music21 import clef, note, stream
    if piece.parts is None and piece.num_voices == 4:
        return [clef.TrebleClef(), clef.TrebleClef(), clef.Treble8vbClef(), clef.BassClef()]
    layout_staves = [len(staves) for staves in piece.parts] if piece.parts is not None else [1] * piece.num_voices
    clefs = []
    for number, voices in enumerate(piece.staves):
        # every sounding pitch of the staff (a chord's each), grace notes included, as bestClef
        # counts them in a built part
        names = [music21_pitch_name(pitch) for measure in piece.measures for voice in voices
                 for event in measure.voices[voice] for pitch in event.pitches]
        if layout_staves[_part_of(layout_staves, number)] > 1:
            first_of_part = number == 0 or _part_of(layout_staves, number - 1) != _part_of(layout_staves, number)
            clefs.append(_keyboard_clef([note.Note(name).pitch.midi for name in names], first_of_part))
        else:
            clefs.append(clef.bestClef(stream.Stream([note.Note(name) for name in names])))
    return clefs


def _tied_into(piece: Piece, first: int) -> dict[int, set[str]]:
    """Per voice, the pitches its last event before measure `first` ties onward."""
    tied: dict[int, set[str]] = {}
    for voice in range(piece.num_voices):
        for measure in reversed(piece.measures[:first]):
            if measure.voices[voice]:
                tied[voice] = set(measure.voices[voice][-1].tied_pitches)
                break
    return tied


def _signatures_in_force(piece: Piece, first: int) -> tuple[int | None, str | None]:
    """The key (sharps) and the time signature in force at measure `first` (None: none yet)."""
    keys = [m.key for m in piece.measures[:first + 1] if m.key is not None]
    times = [m.time for m in piece.measures[:first + 1] if m.time is not None]
    return (keys[-1] if keys else None), (times[-1] if times else None)


def _keyboard_clef(heights: list[int], top: bool):
    """A clef for one staff of a piano (organ, harp), from its notes' MIDI numbers: the upper
    staff treble and the lower ones bass, as players expect, unless the staff's notes lie mostly
    on the other side (music21's bestClef, by average height alone, gives a left hand that
    averages middle C a treble clef)."""
    from music21 import clef
    average = sum(heights) / len(heights) if heights else (67 if top else 48)
    if top:
        return clef.TrebleClef() if average >= 55 else clef.BassClef()  # a G3 average still reads treble
    return clef.BassClef() if average < 65 else clef.TrebleClef()  # an F4 average still reads bass


def _part_of(layout_staves: list[int], staff: int) -> int:
    """Which part (index) a staff (index) belongs to."""
    total = 0
    for part, count in enumerate(layout_staves):
        total += count
        if staff < total:
            return part
    raise IndexError(staff)
