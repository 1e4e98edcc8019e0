"""The rules judged for a whole batch at once (decoding.batched) forbid and weigh exactly what
each row's own checks (checks.py, VoiceLeading.choose) do: the processor's scores, step by step,
against constraints that judge their rows alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scorelm import decoding, language, lm
from scorelm.decoding import batched


@pytest.fixture(scope="module")
def chorales(chorale_texts):
    """The four-voice chorales as token ids (a row each), and their vocabulary."""
    texts = [text for text in chorale_texts.values() if language.parse(text)[0][0].num_voices == 4]
    tokenizer = lm.train_word_tokenizer(texts)
    return tokenizer, decoding.Vocabulary.from_tokenizer(tokenizer), [lm.piece_ids(tokenizer, t) for t in texts]


def alone(vocabulary, constraint) -> tuple[np.ndarray, np.ndarray]:
    """The row's allowed ids and penalty, judged alone (ScoreConstraint.allowed)."""
    mask = constraint.allowed()
    penalty = constraint.penalty if constraint.penalty is not None else np.zeros(vocabulary.size, dtype=np.float32)
    return mask, penalty


@pytest.mark.parametrize("mode", ["mixed", "hard", "soft"])
@pytest.mark.parametrize("free", [True, False], ids=["free", "under a melody"])
def test_a_batch_judged_together_gets_each_row_s_own_verdict(chorales, mode, free, monkeypatch):
    tokenizer, vocabulary, pieces = chorales
    monkeypatch.setattr(batched, "TOGETHER", 1)  # four rows: judged together however few have a note to choose
    rules = decoding.rule_tables(vocabulary, 4, mode, decoding.RULE_NAMES)
    tables = decoding.decoding_tables(vocabulary, 4)

    def row_constraint():
        constraint = decoding.ScoreConstraint(vocabulary, tables, rules=rules)
        constraint.music.free = free  # under a melody the rest rule judges too
        constraint.start(piece[:1])
        return constraint

    together, apart = [], []
    for piece in pieces:
        together.append(row_constraint())
        apart.append(row_constraint())
    processor = decoding.GrammarLogitsProcessor(together, 1, decoding.stop_ids(tokenizer))
    judged = []
    judge = batched.BatchRules.judge
    monkeypatch.setattr(batched.BatchRules, "judge", lambda self, rows: judged.append(len(rows)) or judge(self, rows))
    longest = max(map(len, pieces))
    ids = torch.tensor([piece + [tokenizer.eos_token_id] * (longest - len(piece)) for piece in pieces])
    narrowed = weighed = 0
    for length in range(1, longest):
        scores = processor(ids[:, :length], torch.zeros(len(pieces), vocabulary.size)).numpy()
        for row, constraint in enumerate(apart):
            if length > 1:
                constraint.advance(int(ids[row, length - 1]))
            mask, penalty = alone(vocabulary, constraint)
            if constraint.finished:  # the piece has closed: the processor allows only the end of text
                continue
            np.testing.assert_array_equal(np.isfinite(scores[row]), mask, err_msg=f"row {row}, step {length}")
            np.testing.assert_array_equal(scores[row][mask], -penalty[mask], err_msg=f"row {row}, step {length}")
            narrowed += int((constraint.grammar_mask & ~mask).any())
            weighed += int(penalty[mask].any())
    # the batch path did the judging, and its verdicts were not empty ones: hard rules forbid,
    # soft ones weigh (Bach's own notes break the soft ones now and then)
    assert sum(judged) > 1000, sum(judged)
    assert (narrowed > 100) == (mode != "soft") and (weighed > 100) == (mode != "hard"), (narrowed, weighed)


def test_a_row_every_candidate_of_which_breaks_a_hard_rule_is_left_to_choose(chorales):
    """Hard mode drops rules from the end until a candidate remains: the batch leaves such a row
    to VoiceLeading.choose, which counts the rule it dropped; the others it judges."""
    _, vocabulary, _ = chorales
    rules = decoding.rule_tables(vocabulary, 4, "hard", decoding.RULE_NAMES)
    tables = decoding.decoding_tables(vocabulary, 4)
    rows = []
    for candidates in (["D4:1"], ["D4:1", "B3:1"]):  # the alto's fifths with the soprano; a sixth
        constraint = decoding.ScoreConstraint(vocabulary, tables, rules=rules)
        for word in "| K:0 T:4/4 V1 G4:1 A4:3 V2 C4:1".split():
            constraint.advance(vocabulary.ids_of[word])
        mask = np.zeros(vocabulary.size, dtype=bool)
        mask[[vocabulary.ids_of[word] for word in candidates]] = True
        rows.append((constraint.music, mask, 48))
    verdict = batched.batch_rules(rules).judge(rows)
    assert verdict.stuck == [0] and 0 not in verdict.forbidden_rows and 0 not in verdict.weighed_rows
    assert [(int(row), vocabulary.symbol[int(i)].text) for row, i in zip(verdict.forbidden_rows, verdict.forbidden_ids)
            if row == 1] == [(1, "D4:1")]
    kept, _ = rows[0][0].choose(rows[0][1], 48, False, tables.fillable[2])
    assert kept[vocabulary.ids_of["D4:1"]] and rows[0][0].dropped == {"parallel_fifths": 1}
