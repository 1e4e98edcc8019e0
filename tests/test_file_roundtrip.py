"""The round trip through the files users get, beyond the chorales: a stratified sample of
music21's whole corpus through MusicXML files, the over-long measure, MIDI read back, random
texts through MusicXML files, and the constrained decoder over every piece of the sample."""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction

import pytest
from conftest import run_script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scorelm import cli, language, notation, roundtrip


@pytest.fixture(scope="module")
def corpus_sample():
    """Every folder of music21's corpus but bach, up to 3 files each, every format: round trips."""
    sample = roundtrip.stratified_sample()
    with ProcessPoolExecutor(cli.worker_count(None)) as pool:
        return list(pool.map(roundtrip.file_round_trip, sample))


def test_stratified_corpus_sample_round_trips_through_musicxml(corpus_sample, capsys):
    results = corpus_sample
    folders = {r.source.split("/")[0] for r in results}
    assert len(folders) >= 34 and len(results) >= 66  # every folder, 3 files where it has them
    assert {r.source.rsplit(".", 1)[1] for r in results} >= {"mxl", "xml", "musicxml", "krn", "abc"}
    notes = sum(r.notes for r in results)
    kept = sum(r.kept for r in results) / notes
    kept_but_exceptions = sum(r.kept_but_exceptions for r in results) / notes
    exact = sum(r.exact for r in results) / len(results)
    exact_but_exceptions = sum(r.exact_but_for_exceptions for r in results) / len(results)
    with capsys.disabled():
        print(f"\nfile round trip, {len(results)} files from {len(folders)} folders, {notes} pitched notes: "
              f"notes kept {100 * kept:.2f}% ({100 * kept_but_exceptions:.2f}% but for source ties the "
              f"language cannot hold), files exact {100 * exact:.1f}% ({100 * exact_but_exceptions:.1f}%)")
    assert all(r.error is None for r in results), [(r.source, r.error) for r in results if r.error]
    assert kept >= 0.995
    # exact but for the documented exception: a source's tie that does not lead to the same pitch
    # in the same voice's next note (music21's ABC reader marks slurs between different notes as
    # ties; ties into a rest, another voice or nothing): the language's ties join equal pitches
    assert exact_but_exceptions >= 0.95
    assert sum(r.exact for r in results) >= 50
    # a choir with piano keeps every note, the piano's included (issue 30); Beach's has two ties
    # into another pitch, which the language cannot hold (the documented exception)
    choirs = {r.source.split("/")[0]: (r.kept_but_exceptions, r.notes) for r in results
              if r.source.startswith(("beach/", "liliuokalani/"))}
    assert choirs == {"beach": (1089, 1089), "liliuokalani": (463, 463)}


def test_constrained_decoder_allows_every_piece_of_the_sample(corpus_sample):
    """Piano staves with voices, chords, grace notes, quartets, madrigals, folk tunes: walked word
    by word, every word is allowed where it stands."""
    from scorelm import decoding, lm
    texts = [text for r in corpus_sample for text in r.texts]
    assert any(" +" in t for t in texts) and any(" P:" in t for t in texts) and any(":0 " in t for t in texts)
    tokenizer = lm.train_word_tokenizer(texts)
    vocabulary = decoding.Vocabulary.from_tokenizer(tokenizer)
    unplayable = set(vocabulary.unplayable)  # quintuplets, septuplets, 17-tuplets: decoding.TICKS_PER_QUARTER
    walked = [t for t in texts if not unplayable & set(t.split())]
    print(f"\ndecoder walk: {len(walked)} of {len(texts)} pieces; left out for tuplet values finer than "
          f"the decoder's tick: {len(texts) - len(walked)} ({', '.join(sorted(unplayable)[:6])} ...)")
    assert len(walked) >= 0.9 * len(texts)
    for text in walked:
        piece = language.parse(text)[0][0]
        constraint = decoding.ScoreConstraint(vocabulary, decoding.decoding_tables(vocabulary, piece.num_voices), parts=piece.parts)
        ids = lm.piece_ids(tokenizer, text)
        constraint.start(ids[:1])
        for position, token_id in enumerate(ids[1:]):
            assert constraint.allowed()[token_id], (text.split()[max(0, position - 12):position + 1])
            constraint.advance(token_id)
        assert constraint.finished or not constraint.allowed().any()


OVER_LONG = ("| K:0 T:4/4 L:16 V1 A4:8 A4:8 V2 F4:8 F4:8 V3 C4:8 C4:8 V4 F3:8 F3:8 "
             "| V1 G4:4 V2 E4:4 V3 C4:4 V4 C3:4 ||")


def test_over_long_measure_keeps_its_notes_in_order(tmp_path):
    """A final long chord written as two breves per voice in a measure of 16 quarters under 4/4:
    reconstruct.py's MusicXML holds each voice's notes in order (music21's re-notation used to cut
    the first breve and put its tied rest after the next measure's notes)."""
    from music21 import stream
    (tmp_path / "long.txt").write_text(OVER_LONG + "\n")
    result = run_script("reconstruct.py", tmp_path / "long.txt")
    assert result.returncode == 0, result.stderr
    score = language.read_score(tmp_path / "long.musicxml")
    assert language.encode_score(score) == OVER_LONG
    soprano = score.parts[0].getElementsByClass(stream.Measure)
    assert [(n.nameWithOctave, n.quarterLength, n.tie) for n in soprano[0].notes] == [("A4", 8.0, None)] * 2
    assert [n.nameWithOctave for n in soprano[1].notes] == ["G4"]


@pytest.mark.parametrize("text", [
    "| K:0 T:3/2 V1 B4:2 +G4 R:4 | V1 B4:6 +G4 ||",  # music21 read the rest as 6 quarters
    "| K:-3 T:3/4 V1 D4:1.5^ Eb4:1.5 | L:6 V1 B4:2^ +C4 R:4 ||",  # ... as 3 (a measure of 5)
    "| K:0 T:3/4 V1 B4:3 | L:4 V1 R:4 ||",  # ... as 3, the measure's only event
])
def test_a_whole_rest_keeps_its_length_read_back(tmp_path, text):
    """A whole rest that is not the time signature's bar, beside chords or alone in its measure:
    the MusicXML file read back (language.read_score, as every command reads a score) gives the
    rest its written length. Hypothesis found the second: music21 counts a chord as no note and
    re-lengthens such a rest to the bar."""
    path = tmp_path / "rest.musicxml"
    path.write_bytes(notation.musicxml_bytes(language.score_from_piece(language.parse(text)[0][0])))
    assert language.encode_score(language.read_score(path)) == text


PIANO = ("| K:-1 T:3/4 P:1 P:2/2 V1 F5:2 E5:1 V2 A4:1~ +F4~ A4:1 +F4 Bb4:0 A4:1 +C4 V3 C4:3 V4 F3:1 +F2 "
         "A3:1 +A2 C4:1 +C3 V5 F2:3 | V1 D5:3^ V2 Bb4:3^ +F4 +D4 V4 Bb2:3^ +Bb1 ||")


def test_midi_written_by_reconstruct_reads_back(tmp_path, chorale_texts):
    """reconstruct.py --midi: the file read back gives every sounding note's pitch, onset and
    duration (tied notes joined, grace notes have no MIDI note), chords and voices on a piano too."""
    texts = [PIANO, OVER_LONG] + list(chorale_texts.values())[:3]
    (tmp_path / "pieces.txt").write_text("\n".join(texts) + "\n")
    result = run_script("reconstruct.py", tmp_path / "pieces.txt", "--midi")
    assert result.returncode == 0, result.stderr
    for number, text in enumerate(texts, 1):
        piece = language.parse(text)[0][0]
        assert roundtrip.midi_notes(tmp_path / f"pieces-{number}.mid") == roundtrip.sounding_notes(piece)


def test_piano_text_through_reconstruct(tmp_path):
    """Two braced staves with two voices each, chords with ties, a grace note and a voice absent
    from a measure: reconstruct.py's MusicXML has the piano's staves and voices and reads back
    to the same text."""
    from music21 import layout, stream
    (tmp_path / "piano.txt").write_text(PIANO + "\n")
    assert run_script("reconstruct.py", tmp_path / "piano.txt").returncode == 0
    score = language.read_score(tmp_path / "piano.musicxml")
    assert language.encode_score(score) == PIANO
    assert [type(p).__name__ for p in score.parts] == ["Part", "PartStaff", "PartStaff"]
    assert len(score.getElementsByClass(layout.StaffGroup)) >= 1
    right_hand = score.parts[1].getElementsByClass(stream.Measure)
    assert len(right_hand[0].voices) == 2 and len(right_hand[1].voices) <= 1


# ----------------------------------------------------------------------------- random texts

BINARY = [Fraction(x) for x in ("1/8", "1/4", "1/2", "3/4", "1", "3/2", "2", "3", "4")]
PITCHES = ["C4", "D4", "Eb4", "E4", "F#4", "G4", "A4", "Bb4", "B4", "C5", "D5", "C#5", "E3", "G3", "A2"]


@st.composite
def valid_pieces(draw) -> language.Piece:
    """A random valid piece the files can hold: parts of one or two staves of one or two voices,
    meter changes, pickups and over-long measures, notes, chords, rests, triplets, grace notes,
    fermatas, ties (across bar lines and in chords), voices absent from some measures."""
    layout = tuple(tuple(draw(st.integers(1, 2)) for _ in range(draw(st.integers(1, 2))))
                   for _ in range(draw(st.integers(1, 2))))
    piece = language.Piece(parts=layout if any(len(p) > 1 or max(p) > 1 for p in layout) else None)
    voices = sum(sum(p) for p in layout)
    optional = piece.optional_voices
    count = draw(st.integers(1, 3))
    time = None
    held: list[list[str]] = [[] for _ in range(voices)]  # pitches each voice's last event tied onward
    for index in range(count):
        new_time = draw(st.sampled_from(["4/4", "3/4", "2/2", "6/8"])) if index == 0 or draw(st.booleans()) else None
        new_time = None if new_time == time else new_time
        time = new_time or time
        length = draw(st.sampled_from([language.bar_length(time)] * 3 + [Fraction(1), Fraction(6)]))
        measure = language.Measure(length, [], key=draw(st.integers(-3, 3)) if index == 0 else None, time=new_time)
        for voice in range(voices):
            if voice in optional and not held[voice] and draw(st.booleans()):
                measure.voices.append([])  # absent from this measure
                continue
            events, filled = [], Fraction(0)
            while filled < length:
                room = length - filled
                triplets = room >= 1 and draw(st.integers(0, 5)) == 0
                durations = [Fraction(1, 3)] * 3 if triplets else [draw(st.sampled_from([d for d in BINARY if d <= room]))]
                for duration in durations:
                    filled += duration
                    last_of_piece = index == count - 1 and filled == length
                    if held[voice]:
                        pitches = sorted(held[voice], key=language.pitch_rank, reverse=True)
                    elif draw(st.integers(0, 4)) == 0:
                        events.append(language.Event(None, duration, fermata=draw(st.booleans())))
                        continue
                    else:
                        if draw(st.integers(0, 6)) == 0:
                            events.append(language.Event(draw(st.sampled_from(PITCHES)), Fraction(0), grace=True))
                        pitches = sorted(set(draw(st.lists(st.sampled_from(PITCHES), min_size=1, max_size=3))),
                                         key=language.pitch_rank, reverse=True)
                    ties = [not last_of_piece and draw(st.integers(0, 3)) == 0 for _ in pitches]
                    events.append(language.Event(pitches[0], duration, ties[0], draw(st.integers(0, 5)) == 0,
                                                 chord=tuple(zip(pitches[1:], ties[1:]))))
                    held[voice] = events[-1].tied_pitches
            if voice in optional and not any(e.pitch for e in events):
                events = []  # a voice after a staff's first with no note is not written (encoder's rule)
            measure.voices.append(events)
        piece.measures.append(measure)
    return piece


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_pieces())
def test_random_texts_survive_the_musicxml_file(tmp_path_factory, piece):
    """text -> MusicXML file -> text is the identity, for texts as the encoder writes them (every
    declared voice written in some measure: a staff has as many voices as its fullest measure)."""
    text = piece.to_text()
    assert language.validate(text) == []
    written = {v for m in piece.measures for v, events in enumerate(m.voices) if events}
    if len(written) < piece.num_voices:
        return  # a voice never written: the encoder would declare fewer
    path = tmp_path_factory.mktemp("random") / "piece.musicxml"
    path.write_bytes(notation.musicxml_bytes(language.score_from_piece(piece)))
    assert language.encode_score(language.read_score(path)) == text
