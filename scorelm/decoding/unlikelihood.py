"""What train.py's unlikelihood_weight teaches the model to leave alone: where the decoder's
hard rules forbid words that the grammar allows, along a training piece."""
from __future__ import annotations

import numpy as np

from scorelm.decoding.constraint import ScoreConstraint
from scorelm.decoding.rules import HARD, RULES
from scorelm.decoding.tables import decoding_tables
from scorelm.decoding.vocabulary import Vocabulary
from scorelm.decoding.voice_leading import rule_tables
from scorelm.language import Kind

def forbidden_notes(vocabulary: Vocabulary, ids: list[int], num_voices: int) -> list[tuple[int, np.ndarray]]:
    """Where the rules the default decoder forbids (mixed mode's hard ones: parallel fifths and
    octaves, the final chord) rule out words the grammar allows, along a piece's ids (as
    lm.piece_ids gives them): (position, the forbidden ids), at the positions where the piece's
    own word is not one of them (where Bach wrote a parallel himself, nothing is taught against
    it). What train.py's unlikelihood_weight teaches the model to leave alone."""
    hard = tuple(rule.name for rule in RULES if rule.strength == "hard")
    measures = sum(1 for token_id in ids if (t := vocabulary.symbol.get(token_id)) is not None and t.kind is Kind.BAR)
    constraint = ScoreConstraint(vocabulary, decoding_tables(vocabulary, num_voices), measures,
                                 rules=rule_tables(vocabulary, num_voices, HARD, hard))
    found = []
    for position, token_id in enumerate(ids[1:], start=1):
        allowed = constraint.allowed()
        grammar = constraint.grammar_mask
        if constraint.finished or grammar is None or not grammar[token_id]:
            break  # the grammar lost the piece (words outside the decoder's vocabulary): teach nothing further
        if allowed is not grammar and allowed[token_id]:
            forbidden = np.flatnonzero(grammar & ~allowed)
            if len(forbidden):
                found.append((position, forbidden))
        constraint.advance(token_id)
    return found
