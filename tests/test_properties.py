"""Property-based tests: no text, however broken, makes parsing or reconstruction crash, and
whatever the parser returns is a valid piece that survives the trip through music21 unchanged."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_script

from scorelm import language

STRUCTURE = ["|", "||", "K:0", "K:-3", "K:7", "T:4/4", "T:3/4", "T:6/8", "T:3/2", "L:1", "L:0.5", "L:5",
             "V1", "V2", "V3", "V4", "V5"]
# measure openings with restated and changed signatures, as models write them
OPENINGS = ["| K:0 T:4/4", "| K:0", "| T:4/4", "| K:-3 T:3/4 L:1", "| V1", "| K:0 T:4/4 V1 C4:4 V2 R:4"]
NOTES = ["C4:1", "C4:1~", "D4:0.5", "Eb5:2^", "F#3:1.5", "G2:4", "A4:1/3", "B#4:0.25~", "R:1", "R:2^", "R:0.125"]
JUNK = ["", "x", "C4", "V0", "K:9", "L:-1", "C4:0", "|||", "R:1~", "\u00e9", "C4:99999", "T:4/0"]
words = st.sampled_from(STRUCTURE + NOTES + JUNK + OPENINGS)
random_texts = st.lists(words, max_size=80).map(" ".join)


@st.composite
def mutated_chorales(draw, texts):
    tokens = draw(st.sampled_from(texts)).split()
    for _ in range(draw(st.integers(1, 12))):
        position = draw(st.integers(0, len(tokens)))
        action = draw(st.sampled_from(["delete", "insert", "duplicate", "swap", "truncate"]))
        if action == "delete" and position < len(tokens):
            del tokens[position]
        elif action == "insert":
            tokens.insert(position, draw(words))
        elif action == "duplicate" and position < len(tokens):
            tokens.insert(position, tokens[position])
        elif action == "swap" and position + 1 < len(tokens):
            tokens[position], tokens[position + 1] = tokens[position + 1], tokens[position]
        elif action == "truncate":
            tokens = tokens[:position]
    return " ".join(tokens)


def assert_valid_and_stable(text: str) -> None:
    pieces, report = language.parse(text)
    for piece in pieces:
        canonical = piece.to_text()
        again, again_report = language.parse(canonical)
        assert again_report.total == 0, (canonical, again_report.lines())
        assert [p.to_text() for p in again] == [canonical]
        # the repaired piece is a real score: it turns into music21 and back into the same text
        # (a length no single note value writes, R:2.5, comes back as the rests a file holds: R:2 R:0.5)
        assert language.encode_score(language.score_from_piece(piece)) == language.writable(piece).to_text()


@settings(max_examples=300, deadline=None)
@given(random_texts)
def test_random_text_never_crashes_and_repairs_to_valid(text):
    assert_valid_and_stable(text)


@pytest.fixture(scope="module")
def real_texts(chorale_texts):
    return list(chorale_texts.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_chorales_repair_to_valid(real_texts, data):
    assert_valid_and_stable(data.draw(mutated_chorales(real_texts)))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(random_texts, st.text(max_size=200)))
def test_reconstruct_script_never_raises(tmp_path, text):
    """The whole script, as a user runs it, writing MusicXML and MIDI: written, or a one-line
    error (exit 2) saying there is no music; never a traceback."""
    source = tmp_path / "sample.txt"
    source.write_text(text, encoding="utf-8")
    (tmp_path / "sample.musicxml").unlink(missing_ok=True)
    result = run_script("reconstruct.py", source, "--midi", "--overwrite")
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode:
        assert result.returncode == 2 and "no music" in result.stderr, result.stderr
    else:
        assert (tmp_path / "sample.musicxml").stat().st_size > 0
