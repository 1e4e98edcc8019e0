"""The constrained decoder's tables, built from real chorales: the fast single-number lookups
agree with the arrays, and a voice fills its measure with rests and notes; and a batch padded on
the left keeps transformers' length reminder to itself. (That the decoder allows every word of
every chorale is tested over the whole corpus in test_corpus_roundtrip.py.)"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from scorelm import dataset, decoding, language, lm


@pytest.fixture(scope="module")
def texts(chorale_texts, tiny_dataset) -> list[str]:
    """Real pieces: chorales with a pickup and a time change, and the tiny dataset's."""
    return list(chorale_texts.values()) + [r["text"] for r in dataset.read_jsonl(tiny_dataset / "train.jsonl")]


@pytest.fixture(scope="module")
def vocabulary(texts):
    tokenizer = lm.train_word_tokenizer(texts)
    return tokenizer, decoding.Vocabulary.from_tokenizer(tokenizer)


def test_single_lookups_agree_with_array_lookups(vocabulary):
    _, v = vocabulary
    tables = decoding.decoding_tables(v, 4, [[60, 81], [53, 74], [48, 69], [36, 62]])
    ticks = list(range(-3, tables.min_fill.shape[1] + 3))
    for voice in range(5):
        assert [tables.fill(t, voice) for t in ticks] == tables.fill(np.array(ticks), voice).tolist()
        assert tables.fill(-1, voice) == tables.fill(tables.min_fill.shape[1], voice) == decoding.tables.UNREACHABLE
        for measure_ticks in (0, tables.min_fill.shape[1] - 1, 7):
            expected = tables.closing_cost(voice, np.array(ticks), measure_ticks).tolist()
            assert [tables.closing_cost(voice, t, measure_ticks) for t in ticks] == expected
    assert tables.closing_cost(4, 0, 0) == 2  # nothing left to write but || and the end


def test_a_voice_fills_with_rests_and_untied_notes_in_its_range(vocabulary):
    _, v = vocabulary
    tables = decoding.decoding_tables(v, 4, [[60, 81], [53, 74], [48, 69], [36, 62]])
    for token_id, token in v.symbol.items():
        if token.kind is language.Kind.REST:
            assert all(tables.fill(int(v.ticks[token_id]), voice) == 1 for voice in range(1, 5))
        elif token.kind is language.Kind.NOTE and not token.tie:
            # one note fills its own duration in every voice whose range holds it, and a
            # sixteenth fills in every voice although no sixteenth rest exists
            for voice in range(1, 5):
                if tables.in_range[voice][token_id]:
                    assert tables.fill(int(v.ticks[token_id]), voice) == 1
    sixteenth = int(Fraction(1, 4) / v.tick)
    assert "R:0.25" not in v.ids_of and all(tables.fill(sixteenth, voice) == 1 for voice in range(1, 5))
    assert tables.fill(0, 0) == 0 and tables.fill(sixteenth, 0) == decoding.tables.UNREACHABLE  # nothing before V1



def test_a_padded_batch_drops_only_transformers_length_reminder():
    """Inside padding_past_context transformers' reminder that the batch outgrew the model's
    positions is dropped (padding counts toward that length); any other warning, and the
    reminder outside it, still reach the log."""
    import logging
    logger = logging.getLogger("transformers.generation.stopping_criteria")
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logger.addHandler(handler)
    reminder = ("This is a friendly reminder - the current text generation call has exceeded the model's "
                "predefined maximum length (512).")
    try:
        with decoding.generation.padding_past_context():
            logger.warning(reminder)
            logger.warning("something else")
        logger.warning(reminder)
    finally:
        logger.removeHandler(handler)
    assert seen == ["something else", reminder]
