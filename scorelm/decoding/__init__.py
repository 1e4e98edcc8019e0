"""Decoding: the model writes only valid scores, keeps the voice-leading rules, and closes its
pieces as they should close.

- ``vocabulary``: the model's token ids as words of the language, as arrays the checks index.
- ``tables``: what the grammar constraint looks up on every step (built once per vocabulary).
- ``constraint``: the grammar constraint of one sequence, and the LogitsProcessor over a batch.
- ``rules``: the voice-leading rules (a table), their strengths and the harmony they reason with.
- ``checks``: one check per rule: which candidate notes break it.
- ``voice_leading``: the rules at work: the music written so far (and kept), as the checks read it.
- ``batched``: the rules judged for all rows of a batch at once (checks.py stays the definition).
- ``particles``: particle sampling, so that the rules do not drive voices into a corner.
- ``settings``: SamplingSettings, one typed object for how pieces are sampled.
- ``generation``: generate_texts (a batch, windows over the context, endings written again).
- ``infill``: write_passages, a passage of measures between the music before and after it.
- ``progress``: a progress bar fed by generate()'s streamer hook.
- ``unlikelihood``: the words the hard rules forbid along a training piece (train.py).

Dependencies point one way: vocabulary <- tables, rules <- checks <- voice_leading <- batched <- constraint <-
particles <- generation <- infill.
"""
from scorelm.decoding.constraint import GrammarLogitsProcessor, ScoreConstraint
from scorelm.decoding.generation import MEASURES_BUDGET, MIN_NEW_TOKENS, context_length, generate_texts, stop_ids
from scorelm.decoding.progress import Progress
from scorelm.decoding.rules import MODES, RULE_NAMES, RULES
from scorelm.decoding.settings import SamplingSettings
from scorelm.decoding.tables import decoding_tables
from scorelm.decoding.vocabulary import KINDS, TICKS_PER_QUARTER, Vocabulary
from scorelm.decoding.voice_leading import rule_tables

__all__ = ["GrammarLogitsProcessor", "KINDS", "MEASURES_BUDGET", "MIN_NEW_TOKENS", "MODES", "Progress", "RULES",
           "RULE_NAMES", "SamplingSettings", "ScoreConstraint", "TICKS_PER_QUARTER", "Vocabulary", "context_length",
           "decoding_tables", "generate_texts", "rule_tables", "stop_ids"]
