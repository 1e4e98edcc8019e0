"""The constrained decoder's tables and state, checked against real chorales: every word Bach
wrote is allowed where he wrote it, and the fast single-number lookups agree with the arrays."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from scorelm import dataset, lm, sampling


@pytest.fixture(scope="module")
def texts(chorale_texts, tiny_dataset) -> list[str]:
    """Real pieces: chorales with a pickup and a time change, and the tiny dataset's."""
    return list(chorale_texts.values()) + [r["text"] for r in dataset.read_jsonl(tiny_dataset / "train.jsonl")]


@pytest.fixture(scope="module")
def vocabulary(texts):
    tokenizer = lm.train_word_tokenizer(texts)
    return tokenizer, sampling.Vocabulary.from_tokenizer(tokenizer)


def test_single_lookups_agree_with_array_lookups(vocabulary):
    _, v = vocabulary
    tables = v.tables(4, [[60, 81], [53, 74], [48, 69], [36, 62]])
    ticks = list(range(-3, tables.min_fill.shape[1] + 3))
    for voice in range(5):
        assert [tables.fill(t, voice) for t in ticks] == tables.fill(np.array(ticks), voice).tolist()
        assert tables.fill(-1, voice) == tables.fill(tables.min_fill.shape[1], voice) == sampling.UNREACHABLE
        for measure_ticks in (0, tables.min_fill.shape[1] - 1, 7):
            expected = tables.closing_cost(voice, np.array(ticks), measure_ticks).tolist()
            assert [tables.closing_cost(voice, t, measure_ticks) for t in ticks] == expected
    assert tables.closing_cost(4, 0, 0) == 2  # nothing left to write but || and the end


def test_a_voice_fills_with_rests_and_untied_notes_in_its_range(vocabulary):
    _, v = vocabulary
    tables = v.tables(4, [[60, 81], [53, 74], [48, 69], [36, 62]])
    for token_id, token in v.symbol.items():
        if token.kind is sampling.Kind.REST:
            assert all(tables.fill(int(v.ticks[token_id]), voice) == 1 for voice in range(1, 5))
        elif token.kind is sampling.Kind.NOTE and not token.tie:
            # one note fills its own duration in every voice whose range holds it, and a
            # sixteenth fills in every voice although no sixteenth rest exists
            for voice in range(1, 5):
                if tables.in_range[voice][token_id]:
                    assert tables.fill(int(v.ticks[token_id]), voice) == 1
    sixteenth = int(Fraction(1, 4) / v.tick)
    assert "R:0.25" not in v.ids_of and all(tables.fill(sixteenth, voice) == 1 for voice in range(1, 5))
    assert tables.fill(0, 0) == 0 and tables.fill(sixteenth, 0) == sampling.UNREACHABLE  # nothing before V1


def test_every_word_of_real_chorales_is_allowed(vocabulary, texts):
    """The constraint never rules out what the training pieces actually do (key and time
    changes, pickups, ties, fermatas), and its values derived from the bar length stay current."""
    tokenizer, v = vocabulary
    tables = v.tables(4)
    time_changes = 0
    for text in texts:
        ids = lm.piece_ids(tokenizer, text)
        constraint = sampling.ScoreConstraint(v, tables, 4)
        constraint.start(ids[:1])
        for position, token_id in enumerate(ids[1:], start=1):
            allowed = constraint.allowed()
            assert allowed[token_id], (text.split()[:position], v.symbol[token_id].text)
            assert not constraint.finished
            g = constraint.grammar
            assert constraint._bar_ticks == (int(g.bar_length / v.tick) if g.bar_length else 0)
            constraint.advance(token_id)
        time_changes += sum(1 for word in text.split()[3:] if word.startswith("T:"))
        assert constraint.grammar.last is sampling.Kind.END
        assert not constraint.allowed().any() and constraint.finished  # nothing after ||
    assert time_changes >= 1  # bwv171.6 changes its meter: the bar length's derived values were refreshed
