"""The round trip through the files users get: a score encoded, written as MusicXML the way
reconstruct.py writes it, read back by music21 and encoded again. Which notes survive (each
chord note counted; pitch, onset, duration, tie, fermata, grace) and whether the text comes
back the same; MIDI read back for its pitches, onsets and durations.

Used by the tests and by bench/bench_roundtrip.py (per corpus folder)."""
from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from scorelm import dataset, language, notation

SCORES_PER_COLLECTION = 2  # an ABC collection or opus file: its first scores
FILES_PER_FOLDER = 3


def stratified_sample(files_per_folder: int = FILES_PER_FOLDER, skip=("bach",)) -> list[str]:
    """A few files from every folder of music21's corpus (corpus paths), every format a folder
    holds taking its turn: the first file of each format, then the second, ..., spread over the
    folder's sorted list."""
    sample = []
    for folder, files in dataset.corpus_folders().items():
        if folder in skip:
            continue
        by_format: dict[str, list[str]] = {}
        for path in files:
            by_format.setdefault(path.rsplit(".", 1)[-1].lower(), []).append(path)
        queues = [spread(paths, files_per_folder) for _, paths in sorted(by_format.items())]
        chosen = []
        while len(chosen) < files_per_folder and any(queues):
            for queue in queues:
                if queue and len(chosen) < files_per_folder:
                    chosen.append(queue.pop(0))
        sample.extend(chosen)
    return sample


def spread(items: list, count: int) -> list:
    """`count` items evenly spaced through a list (all of it if shorter)."""
    if len(items) <= count:
        return list(items)
    return [items[round(i * (len(items) - 1) / max(count - 1, 1))] for i in range(count)]


def scores_of(source: str) -> list:
    """The scores in a file: one, or the first few of a collection (an ABC book, an opus)."""
    from music21 import stream
    parsed = language.read_score(source)
    if isinstance(parsed, stream.Opus):
        return list(parsed.scores)[:SCORES_PER_COLLECTION]
    return [parsed]


def _pitch_name(pitch) -> str:
    cents = pitch.microtone.cents if pitch.microtone is not None else 0
    return pitch.nameWithOctave + (f"{cents:+g}c" if cents else "")


# the parts a user's score keeps (generate_data.py --input): all but an instrument doubling a voice
INSTRUMENTS = "doubling"


def notes_of(score, ties_the_language_holds: bool = False) -> Counter:
    """Every pitched note of the staves the encoder reads (each chord note counted): (staff,
    measure, offset in the measure, pitch, duration, tied onward, fermata, grace).

    A note's place is its measure and its offset there, as the engraving shows it (a source whose
    parts disagree on a measure's length, as Violin II's measure 42 in Haydn's op. 74 no. 1, iv,
    an eighth short, shifts that part's later notes in music21's flattened offsets, not on the
    page), and its duration the notated one (encoder.timed_elements: a file's durations are whole
    divisions of a quarter, so Schubert's Lindenbaum stores a triplet eighth as 85/256).

    ties_the_language_holds: count a tie only where it leads to the same pitch in the same voice's
    next note or chord (the language's tie); a source's other ties (into another pitch, as
    music21's ABC reader marks slurs; into a rest or nothing; into another voice) as untied."""
    from music21 import chord, expressions
    from scorelm.language.encoder import _measures_of, tied_onward, timed_elements, voice_containers
    notes = Counter()
    for number, staff in enumerate(language.select_parts(score, INSTRUMENTS)):
        voices: dict[int, list[tuple[int, Fraction, object, Fraction]]] = {}  # voice -> its elements in order
        for index, measure in enumerate(_measures_of(staff)):
            for order, (container, elements) in enumerate(voice_containers(measure)):
                voices.setdefault(order, []).extend(
                    (index, onset, element, duration) for onset, duration, element in timed_elements(container, elements))
        for sequence in voices.values():
            for position, (index, onset, element, duration) in enumerate(sequence):
                if not getattr(element, "pitches", ()):
                    continue
                following = set()
                if position + 1 < len(sequence):
                    after = sequence[position + 1][2]
                    if not after.duration.isGrace and sequence[position + 1][0] in (index, index + 1):
                        following = {p.nameWithOctave for p in getattr(after, "pitches", ())}
                fermata = any(isinstance(e, expressions.Fermata) for e in element.expressions)
                grace = element.duration.isGrace
                members = [n for n in element.notes if hasattr(n, "pitch")] \
                    if isinstance(element, chord.ChordBase) else [element]
                for member, onward in zip(members, tied_onward(element, members)):
                    if ties_the_language_holds:
                        onward = onward and not grace and member.pitch.nameWithOctave in following
                    notes[(number, index, onset, _pitch_name(member.pitch), duration, onward, fermata, grace)] += 1
    return notes


@dataclass
class RoundTrip:
    source: str
    notes: int = 0  # pitched notes in the source's encoded staves
    kept: int = 0  # of them, found unchanged in the file written and read back
    kept_but_exceptions: int = 0  # the same, a source tie the language cannot hold not counted as lost
    scores: int = 0
    exact_scores: int = 0  # text identical after the file, and every note kept
    exact_but_exceptions: int = 0  # the same, but for source ties the language cannot hold
    error: str | None = None
    lost: Counter = field(default_factory=Counter)  # lost notes, by what differs
    encoder_losses: Counter = field(default_factory=Counter)
    texts: list[str] = field(default_factory=list)  # each score's text

    @property
    def exact(self) -> bool:
        return self.error is None and self.scores > 0 and self.exact_scores == self.scores

    @property
    def exact_but_for_exceptions(self) -> bool:
        return self.error is None and self.scores > 0 and self.exact_but_exceptions == self.scores


def musicxml_round_trip(piece: language.Piece, folder: Path):
    """The piece written as reconstruct.py writes MusicXML, and that file read back by music21."""
    import warnings

    path = folder / "piece.musicxml"
    path.write_bytes(notation.musicxml_bytes(language.score_from_piece(piece)))
    with warnings.catch_warnings():
        # MusicXML counts time in whole divisions (music21 writes 10080 a quarter): a 17-tuplet's
        # notes round, and music21 warns of measures overfull by 1/10080 of a quarter
        warnings.simplefilter("ignore")
        return language.read_score(path, forceSource=True)


def file_round_trip(source: str) -> RoundTrip:
    result = RoundTrip(source)
    try:
        scores = scores_of(source)
    except Exception as error:  # music21 cannot read it: said, not hidden
        result.error = f"unreadable: {type(error).__name__}: {error}"
        return result
    with tempfile.TemporaryDirectory() as folder:
        for score in scores:
            stats = language.EncodeStats()
            try:
                piece = language.piece_from_score(score, stats, INSTRUMENTS)
                text = piece.to_text()
                back = musicxml_round_trip(piece, Path(folder))
                again = language.encode_score(back, instruments=INSTRUMENTS)
            except Exception as error:
                result.error = f"{type(error).__name__}: {error}"
                return result
            result.encoder_losses.update(stats.counts)
            result.texts.append(text)
            source_notes, file_notes = notes_of(score), notes_of(back)
            kept = sum((source_notes & file_notes).values())
            holdable = sum((notes_of(score, ties_the_language_holds=True) & file_notes).values())
            result.notes += sum(source_notes.values())
            result.kept += kept
            result.kept_but_exceptions += holdable
            result.scores += 1
            result.exact_scores += again == text and kept == sum(source_notes.values())
            result.exact_but_exceptions += again == text and holdable == sum(source_notes.values())
            for note in (source_notes - file_notes).elements():
                result.lost[_what_differs(note, file_notes)] += 1
    return result


def _what_differs(note: tuple, found: Counter) -> str:
    """Why a source note is not in the file: the first attribute whose change would find it."""
    names = {2: "onset", 3: "pitch", 4: "duration", 5: "tie", 6: "fermata", 7: "grace"}
    for index, name in names.items():
        for other in found:
            if other[:2] == note[:2] and all(other[i] == note[i] for i in names if i != index):
                return f"{name} changed"
    return "missing"


def sounding_notes(piece: language.Piece) -> Counter:
    """(MIDI number, onset, duration) of every sounding note, tied notes joined, grace notes left
    out (a MIDI file has no grace notes): what a MIDI file of the piece holds."""
    notes = Counter()
    for voice in range(piece.num_voices):
        held: dict[str, tuple[Fraction, Fraction]] = {}  # pitch -> (onset, duration so far)
        for onset, event in piece.voice_events(voice):
            if event.grace:
                continue
            tied = set(event.tied_pitches)
            for pitch in event.pitches:
                start, length = held.pop(pitch, (onset, Fraction(0)))
                length += event.duration
                if pitch in tied:
                    held[pitch] = (start, length)
                else:
                    notes[(language.midi_number(pitch), start, length)] += 1
    return notes


def midi_notes(path: Path) -> Counter:
    """(MIDI number, onset, duration) of every note in a MIDI file, read back by music21 without
    quantizing (onsets and durations as the file has them, to the nearest 1/480 quarter)."""
    # music21 puts what it reads in measures, tying notes over its bar lines: joined again here
    score = language.read_score(path, quantizePost=False, forceSource=True).stripTies(matchByPitch=True)
    notes = Counter()
    for element in score.flatten().notes:
        onset = Fraction(element.offset).limit_denominator(480)
        duration = Fraction(element.duration.quarterLength).limit_denominator(480)
        for pitch in element.pitches:
            notes[(pitch.midi, onset, duration)] += 1
    return notes
