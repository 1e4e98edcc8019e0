"""Infilling at decoding time: a passage of whole measures written between the music before it and
the music after it, by a model trained to infill (scorelm.infilling). The model reads

    <eos> <suffix> after <middle> before <measures:N>

and writes the passage on from the music before it. The grammar constraint follows the music
before it (the ties still open into the passage), keeps the score's keys, meters and measure
lengths, and ends the passage after its measures with the end of text, where a piece would
close; the rules hold inside the passage, and treat its last measure as a final one only where
the passage closes the piece.
"""
from __future__ import annotations

from scorelm import infilling, language
from scorelm.cli import UserError
from scorelm.decoding import voice_leading
from scorelm.decoding.constraint import GrammarLogitsProcessor, ScoreConstraint
from scorelm.decoding.generation import MIN_NEW_TOKENS, constraint_tables, context_length, sample_batch
from scorelm.decoding.particles import sample_particles
from scorelm.decoding.settings import SamplingSettings
from scorelm.decoding.vocabulary import Vocabulary


# room a passage needs at least, a measure: a chorale's measure takes 20 to 40 tokens (a tighter
# budget would leave the model only whole notes)
TOKENS_A_MEASURE = 32


def write_passages(model, tokenizer, before: str, after: str, headers: list[list[str]], num_samples: int,
                   settings: SamplingSettings, *, seed: int | None = None, vocabulary: Vocabulary | None = None,
                   rule_report: dict | None = None, progress=None,
                   kept: list[dict[int, list[str]]] | None = None,
                   rewritten: tuple[int, ...] | None = None) -> list[str]:
    """`num_samples` passages (their words, from their first bar line) to stand between `before`
    (the piece's text up to the passage, its header included; "" where the passage opens the
    piece) and `after` (the text after it, from its bar line to the close ||), in one batch.
    `headers`: each measure of the passage's first words, its bar line and any key, time
    signature, length and layout words (infilling.measure_headers): the passage keeps the
    score's meter, measure lengths and keys, which the music after it was written in. The model
    must hold infilling's sentinels (infilling.sentinel_ids). `kept`: per measure of the passage,
    the voices it keeps, their words by voice number (infilling.measure_voices): the model writes
    the others between them, judged by the rules against them; `rewritten`: the voice numbers the
    model writes (None: every one not kept), so that a voice a measure lacks and the model does
    not write (a piano score's optional voice) stays absent."""
    import torch
    from transformers import LogitsProcessorList, set_seed

    from scorelm import lm
    sentinels = infilling.sentinel_ids(tokenizer)
    if sentinels is None:
        raise ValueError("the tokenizer has no infilling sentinels")
    settings = settings.in_effect()
    if seed is not None:
        set_seed(seed)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    before_ids = lm.piece_ids(tokenizer, before) if before.strip() else [eos]
    after_ids = tokenizer(lm.model_text(after), add_special_tokens=False)["input_ids"]
    measures = len(headers)
    prompt_ids = [eos, sentinels.suffix] + after_ids + [sentinels.middle] + before_ids[1:] + [sentinels.length(measures)]
    budget = context_length(model) - len(prompt_ids)
    needed = min(MIN_NEW_TOKENS, TOKENS_A_MEASURE * measures)
    if budget < needed:
        raise UserError(f"the piece is too long to infill: the music around the passage takes {len(prompt_ids)} of "
                        f"the model's {context_length(model)} tokens, leaving {max(budget, 0)} for the passage "
                        f"(at least {needed} needed)")
    vocabulary, tables, rules = constraint_tables(tokenizer, settings, vocabulary)
    measures_before = before.split().count(language.BAR)
    forced = [[]] * measures_before + [list(words) for words in headers]
    kept_after: dict[int, dict[int, list[int]]] = {}
    if kept:
        forced, kept_after = _with_kept_voices(forced, kept, measures_before, vocabulary, rewritten)
    closes_piece = after.split() == [language.END]
    # what the rules judge against besides the music written: the same for every row, built once
    following = voice_leading.first_chord(rules, after.split(), vocabulary) if rules is not None and not closes_piece else None
    kept_music = voice_leading.kept_events(rules, {measures_before + index: list(voices.values())
                                                   for index, voices in enumerate(kept)}, vocabulary) \
        if rules is not None and kept else {}
    constraints = []
    for _ in range(num_samples * settings.particles):
        constraint = ScoreConstraint(vocabulary, tables, None, forced, budget, rules, settings.parts)
        constraint.ends_with = eos
        constraint.headers_as_given = True  # the score's own keys, meters and measure lengths
        constraint.kept_after = kept_after
        constraint.closes_piece = closes_piece
        constraint.start(before_ids)  # the music before the passage, not the sentinels and what follows
        if constraint.music is not None:
            constraint.music.following, constraint.music.kept = following, kept_music
        constraints.append(constraint)
    processor = GrammarLogitsProcessor(constraints, len(prompt_ids), [eos, pad])
    input_ids = torch.tensor([prompt_ids] * len(constraints), device=model.device)
    streamer = progress.start(len(input_ids), budget, [eos]) if progress is not None else None
    if settings.particles > 1:
        for constraint in constraints:
            constraint.weigh_steps = True
        output, constraints = sample_particles(model, input_ids, processor, settings.particles, budget, [eos], pad,
                                               temperature=settings.temperature, top_k=settings.top_k,
                                               top_p=settings.top_p, progress=streamer)
    else:
        output = sample_batch(model, tokenizer, input_ids, torch.ones_like(input_ids), LogitsProcessorList([processor]),
                              settings, budget, [eos], streamer)
    if rule_report is not None:
        for constraint in constraints:
            for name, count in (constraint.music.dropped.items() if constraint.music is not None else ()):
                rule_report[name] = rule_report.get(name, 0) + count
    return [" ".join(tokenizer.decode(row[len(prompt_ids):], skip_special_tokens=True).split()) for row in output]


def _with_kept_voices(forced: list[list[str]], kept: list[dict[int, list[str]]], measures_before: int,
                      vocabulary: Vocabulary, rewritten: tuple[int, ...] | None = None,
                      ) -> tuple[list[list[str]], dict[int, dict[int, list[int]]]]:
    """The forced words of each measure with the kept voices: those above the first voice the
    model writes follow the measure's header; the others follow the voice the model writes just
    above them (ScoreConstraint.kept_after, by measure index and voice number). A voice neither
    kept nor in `rewritten` (None: every voice not kept is rewritten) is absent from the measure
    and stays so: the kept voices below it follow whatever the model writes above it."""
    forced = [list(words) for words in forced]
    kept_after: dict[int, dict[int, list[int]]] = {}
    for offset, voices in enumerate(kept):
        index = measures_before + offset
        written_above = 0  # the last voice above the kept ones that the model writes (0: none, the header)
        for number in range(1, max(voices, default=0) + 1):
            if number not in voices:
                if rewritten is None or number in rewritten:
                    written_above = number
            elif written_above == 0:
                forced[index] += voices[number]
            else:
                kept_after.setdefault(index, {}).setdefault(written_above, []).extend(
                    vocabulary.ids_of[word] for word in voices[number])
    return forced, kept_after

