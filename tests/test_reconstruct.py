"""reconstruct.py end to end: files that parse, repairs reported, exit codes."""
from __future__ import annotations

import pytest
from conftest import run_script

from scorelm import language


@pytest.fixture
def chorale_file(tmp_path, chorale_texts):
    path = tmp_path / "out.txt"
    path.write_text(chorale_texts["bach/bwv66.6.mxl"] + "\n")
    return path


def test_writes_musicxml_midi_and_png_that_read_back(chorale_file, chorale_texts):
    result = run_script("reconstruct.py", chorale_file, "--midi", "--png")
    assert result.returncode == 0, result.stderr
    folder = chorale_file.parent
    assert result.stdout.split() == [str(folder / f"out{s}") for s in (".musicxml", ".mid", ".png")]
    score = language.read_score(folder / "out.musicxml")
    assert [p.partName for p in score.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert language.encode_score(score) == chorale_texts["bach/bwv66.6.mxl"]  # MusicXML on disk is exact
    # MIDI: every sounding note (a tied chain is one) starts at the right time and pitch
    piece = language.parse(chorale_texts["bach/bwv66.6.mxl"])[0][0]
    expected = []
    for voice in range(4):
        tied = False
        for offset, event in piece.voice_events(voice):
            if event.pitch and not tied:
                expected.append((offset, language.midi_number(event.pitch)))
            tied = event.tie
    midi = language.read_score(folder / "out.mid")
    onsets = [(n.getOffsetInHierarchy(midi), n.pitch.midi) for n in midi.recurse().notes
              if n.tie is None or n.tie.type == "start"]
    assert sorted(onsets) == sorted(expected)
    png = (folder / "out.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert result.stderr == ""  # nothing repaired


def test_several_pieces_and_stdin(tmp_path, chorale_texts):
    texts = list(chorale_texts.values())[:2]
    result = run_script("reconstruct.py", "-", "-o", tmp_path / "two.musicxml", stdin="\n".join(texts))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "two-1.musicxml"), str(tmp_path / "two-2.musicxml")]


def test_repairs_are_listed_and_strict_fails(tmp_path):
    sample = tmp_path / "bad.txt"
    sample.write_text("| K:0 T:4/4 V1 C4:1 D4:5 ?? V2 E4:1 | V1 C4:4~ V2 D4:4 | V1 D4:4 V2 C4:2")
    result = run_script("reconstruct.py", sample)
    assert result.returncode == 0
    assert "repaired 6 problem(s)" in result.stderr and "unknown token" in result.stderr
    assert (tmp_path / "bad.musicxml").exists()
    strict = run_script("reconstruct.py", sample, "--strict", "-o", tmp_path / "strict.musicxml")
    assert strict.returncode == 1 and "--strict" in strict.stderr
    assert not (tmp_path / "strict.musicxml").exists()


@pytest.mark.parametrize("content", ["", "   \n", "hello world", "| ||"])
def test_unusable_input_exits_2(tmp_path, content):
    sample = tmp_path / "empty.txt"
    sample.write_text(content)
    result = run_script("reconstruct.py", sample)
    assert result.returncode == 2 and "no music" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3 and "Traceback" not in result.stderr


def test_missing_file_and_no_overwrite(chorale_file):
    missing = run_script("reconstruct.py", chorale_file.parent / "nope.txt")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert run_script("reconstruct.py", chorale_file).returncode == 0
    again = run_script("reconstruct.py", chorale_file)
    assert again.returncode == 2 and "--overwrite" in again.stderr


@pytest.mark.parametrize("script", ["generate_data.py", "reconstruct.py"])
def test_help(script):
    result = run_script(script, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


def test_an_over_long_measure_music21_cannot_renotate_still_round_trips(tmp_path):
    """Measures of 4 and 3 quarters under 1/8 (as a weak model writes): music21's re-notation
    fails on them (StreamException), so the score is written as it is; the MusicXML file reads
    back to the same text."""
    text = "| K:1 T:1/8 L:4 V1 C5:1 D5:2 E5:1 V2 A4:4 | L:3 V1 C5:3 V2 A4:3 ||"
    (tmp_path / "long.txt").write_text(text + "\n")
    result = run_script("reconstruct.py", tmp_path / "long.txt", "--png")
    assert result.returncode == 0, result.stderr
    assert language.encode_score(language.read_score(tmp_path / "long.musicxml")) == text
    assert (tmp_path / "long.png").read_bytes()[:4] == b"\x89PNG"


def _without_part_ids(xml: bytes) -> str:
    """MusicXML with music21's random part ids numbered in order of appearance."""
    import re
    ids: dict[str, str] = {}
    return re.sub(r'P[0-9a-f]{32}', lambda match: ids.setdefault(match.group(0), f"P{len(ids)}"), xml.decode())


@pytest.mark.parametrize("name", ["bach/bwv248.42-4", "joplin/maple_leaf_rag", "beach/prayer"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_piece_written_in_spans_is_the_same_musicxml_as_written_whole(name, workers):
    """A long piece is written in spans of measures (in parallel where there are cores): the
    document is the same, byte for byte but for music21's random part ids, whatever the span
    length. Spans of 1 to 4 measures put their edges at every measure: ties across them
    (bwv248.42-4's held notes, the rag's syncopations), accidentals carried from the measure
    before, key and time changes, a pickup, keyboard clefs judged from the whole piece and a
    choir with a piano (Beach)."""
    from music21 import corpus
    from scorelm import notation
    piece = language.parse(language.encode_score(corpus.parse(name), instruments="doubling"))[0][0]
    whole = _without_part_ids(notation.musicxml_bytes(language.score_from_piece(piece, title=name), in_place=True))
    for span in (1, 2, 4):
        spanned = notation.piece_musicxml(piece, title=name, workers=workers, span_measures=span)
        assert _without_part_ids(spanned) == whole, (name, span)


def test_a_long_text_reconstructs_in_spans_and_reads_back(tmp_path, chorale_texts):
    """Past notation.SPAN_MEASURES measures reconstruct.py writes the piece in spans: the file
    holds every measure, numbered in order, and reads back to the same text."""
    from scorelm import notation
    words = chorale_texts["bach/bwv66.6.mxl"].split()
    bars = [index for index, word in enumerate(words) if word == language.BAR]
    head, body = words[:bars[1]], words[bars[1]:words.index(language.END)]
    repeats = notation.SPAN_MEASURES // body.count(language.BAR) + 2
    text = " ".join(head + body * repeats + [language.END])
    measures = text.split().count(language.BAR)
    assert measures > notation.SPAN_MEASURES + 10
    (tmp_path / "long.txt").write_text(text + "\n")
    result = run_script("reconstruct.py", tmp_path / "long.txt")
    assert result.returncode == 0, result.stderr
    score = language.read_score(tmp_path / "long.musicxml")
    for part in score.parts:
        numbers = [measure.number for measure in part.getElementsByClass("Measure")]
        assert numbers == list(range(numbers[0], numbers[0] + measures))
    assert language.encode_score(score) == text
