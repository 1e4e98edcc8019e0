"""Generation: pieces sampled in a batch under the grammar constraint and the rules, with
transformers' generate() (or particle sampling); a piece longer than the model's context written
in windows of it; a close that breaks the rules written again."""
from __future__ import annotations

import contextlib
import copy
import logging
from typing import NamedTuple

from scorelm import language
from scorelm.cli import UserError
from scorelm.decoding.constraint import GrammarLogitsProcessor, ScoreConstraint
from scorelm.decoding.particles import STATIC_CACHE_ROWS, sample_particles
from scorelm.decoding.progress import Progress
from scorelm.decoding.rules import OFF, analysed_tonic
from scorelm.decoding.settings import SamplingSettings
from scorelm.decoding.tables import decoding_tables
from scorelm.decoding.vocabulary import Vocabulary
from scorelm.decoding.voice_leading import VoiceLeading, rule_tables

def stop_ids(tokenizer) -> list[int]:
    """Generation ends at || (the end of the piece) or at the end-of-text token."""
    ids = [tokenizer.eos_token_id]
    end = tokenizer(" ||", add_special_tokens=False)["input_ids"]
    if len(end) == 1:
        ids.append(end[0])
    return ids


MIN_NEW_TOKENS = 128  # enough to finish a measure and close the piece, however long the prompt
MEASURES_BUDGET = 1024  # infer.py --measures N without --max-new-tokens: the measures asked for come first


def context_length(model) -> int:
    """Positions the model knows (from scratch, train.py's max_length: model_folder.load sees to it
    for models saved before the config recorded it; fine-tuned, the pretrained model's): beyond them a model writes from positions it never learned, and its music falls apart (long
    free samples turned to runs, rests and grace notes after about 500 tokens)."""
    return getattr(model.config, "max_position_embeddings", None) or 1024


def generate_texts(model, tokenizer, prompt: str, num_samples: int = 1, settings: SamplingSettings = SamplingSettings(),
                   *, measures: int | None = None, forced_measures: list[list[str]] | None = None,
                   max_new_tokens: int | None = None, seed: int | None = None, vocabulary: Vocabulary | None = None,
                   rule_report: dict | None = None, progress=None,
                   melodies: list[list[list[str]]] | None = None) -> list[str]:
    """Sample `num_samples` pieces continuing `prompt`, in one batch with the KV cache, as
    `settings` say. measures: the piece ends after that many; forced_measures: the words each
    measure must begin with (a harmonization's melody: melody.melody_plan). max_new_tokens None:
    as many as the model's context holds after the prompt (at least MIN_NEW_TOKENS), so that a
    new piece closes before the positions the model was never trained on. rule_report (a dict)
    receives how often hard mode had to drop each rule, and how many endings were written again
    (rewrite_ending). A layout with several voices on a staff (a piano's) is sampled without the
    voice-leading rules. A harmonization, or a piece of `measures` measures, that needs more
    tokens than the model's context holds is written in windows of it (write_in_windows).
    progress: a Progress (tokens and pieces as they are written), or None. melodies: each piece's
    own forced measures (num_samples of them, in place of forced_measures): several melodies
    harmonized side by side, each closing where its melody does (max_new_tokens: the longest's
    budget)."""
    if melodies is not None and (len(melodies) != num_samples or forced_measures is not None):
        raise ValueError("melodies: one forced-measure list per piece, instead of forced_measures")
    return _generate(model, tokenizer, prompt, num_samples, settings.in_effect(), measures=measures,
                     forced_measures=forced_measures, max_new_tokens=max_new_tokens, seed=seed,
                     vocabulary=vocabulary, rule_report=rule_report, progress=progress, melodies=melodies)


def _generate(model, tokenizer, prompt: str, num_samples: int, settings: SamplingSettings, *, measures: int | None,
              forced_measures: list[list[str]] | None, max_new_tokens: int | None, seed: int | None,
              vocabulary: Vocabulary | None, rule_report: dict | None, progress=None,
              one_window: bool = False, melodies: list | None = None, last_measures: "LastMeasures | None" = None
              ) -> list[str]:
    """generate_texts with its settings in effect; one_window: this call writes one window of a
    piece (write_in_windows), so the piece is not closed within its tokens. last_measures: each
    row's own prompt, measures and report instead (rewrite_endings: `prompt`, `measures` and
    `rule_report` unused); one particle a row."""
    import torch
    from transformers import LogitsProcessorList, set_seed

    from scorelm import lm
    constrain, stop_at_end, particles = settings.constrain, settings.stop_at_end, settings.particles
    forced_of = melodies if melodies is not None else [forced_measures] * num_samples  # per piece
    any_forced = any(forced_of)
    if seed is not None:
        set_seed(seed)
    prompts = last_measures.prompts if last_measures is not None else [prompt] * num_samples
    measures_of = last_measures.measures if last_measures is not None else [measures] * num_samples
    if last_measures is not None:
        measures = max(measures_of)  # known measures: the rows' conditions below are alike
    ids_of = [lm.piece_ids(tokenizer, text) if text.strip() else [tokenizer.eos_token_id] for text in prompts]
    prompt_ids = ids_of[0]
    width = max(map(len, ids_of))  # rows of shorter prompts are padded on the left (masked out)
    budget_given = max_new_tokens is not None
    if max_new_tokens is None:  # rows padded to one width share its budget (within the context, as one row's)
        max_new_tokens = max(MIN_NEW_TOKENS, context_length(model) - width)
    # a harmonization, or a piece of set measures given more tokens than the context holds, is
    # written in windows of it (an ending written again keeps to its own last measure: no budget given)
    windows = (any_forced or measures is not None and budget_given) and constrain and stop_at_end \
        and max_new_tokens > context_length(model) - len(prompt_ids) > 0
    if windows:
        max_new_tokens = context_length(model) - len(prompt_ids)
    stops = stop_ids(tokenizer)
    processors = LogitsProcessorList()
    input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(ids)) + ids for ids in ids_of
                              for _ in range(particles)], device=model.device)
    attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in ids_of for _ in range(particles)],
                                  device=model.device)
    if constrain:
        vocabulary, tables, rules = constraint_tables(tokenizer, settings, vocabulary)
        # the tokens the piece must close within: none where the measures decide where it ends
        closing_budget = None if any_forced or windows or one_window else max_new_tokens
        constraints = []
        for _ in range(num_samples * particles):
            piece = len(constraints) // particles
            constraint = ScoreConstraint(vocabulary, tables, measures_of[piece], forced_of[piece], closing_budget,
                                         rules, settings.parts)
            constraint.start(ids_of[piece])
            constraints.append(constraint)
        processors.append(GrammarLogitsProcessor(constraints, width, stops + [tokenizer.pad_token_id]))
    streamer = progress.start(len(input_ids), max_new_tokens, stops) if progress is not None else None
    if particles > 1 and constrain:
        if any(ids != prompt_ids for ids in ids_of):
            raise ValueError("particle sampling writes rows of one prompt")
        for constraint in constraints:
            constraint.weigh_steps = True
        output, constraints = sample_particles(model, input_ids, processors[0], particles, max_new_tokens,
                                               stops if stop_at_end else [], tokenizer.pad_token_id,
                                               temperature=settings.temperature, top_k=settings.top_k,
                                               top_p=settings.top_p, progress=streamer)
    else:
        with padding_past_context() if width > min(map(len, ids_of)) else contextlib.nullcontext():
            output = sample_batch(model, tokenizer, input_ids, attention_mask, processors, settings,
                                  max_new_tokens, stops if stop_at_end else None, streamer)
    # each row's report: the one rule_report, or (last_measures) the row's own
    report_of = last_measures.reports if last_measures is not None else [rule_report] * len(output)
    if constrain:
        for constraint, report in zip(constraints, report_of):
            if constraint.music is not None and report is not None:
                for name, count in constraint.music.dropped.items():
                    report[name] = report.get(name, 0) + count
    texts = []
    for row, row_prompt in zip(output, prompts):  # one row a piece (particles: the chosen ones)
        continuation = tokenizer.decode(row[width:], skip_special_tokens=True)
        words = (row_prompt + " " + continuation).split()
        if language.END in words:
            words = words[:words.index(language.END) + 1]
        texts.append(" ".join(words))
    windowed = set()  # rows whose constraint followed only their first window
    if windows:
        for row, text in enumerate(texts):
            if not text.endswith(language.END):
                texts[row] = write_in_windows(model, tokenizer, text, measures, forced_of[row], seed, row,
                                              rule_report, settings, vocabulary)
                windowed.add(row)
    if constrain and settings.rules != OFF and measures is None and not any_forced and stop_at_end:
        faults = {row: ending_faults(c.music, texts[row]) for row, c in enumerate(constraints)
                  if c.music is not None and texts[row].endswith(language.END)}
        broken = [row for row, names in faults.items() if names]
        if broken:
            written = rewrite_endings(model, tokenizer, [texts[row] for row in broken], prompt, seed, broken,
                                      rule_report, settings, vocabulary,
                                      modal_only=[faults[row] == {"signature_tonic"} for row in broken],
                                      progress=progress)
            for row, text in zip(broken, written):
                texts[row] = text
    if constrain and measures is not None and not any_forced:
        # a piece of known measures (an ending written again reads these): does it close as the rules want
        for row, (c, report) in enumerate(zip(constraints, report_of)):
            if report is not None and c.music is not None and texts[row].endswith(language.END) \
                    and row not in windowed:
                for name in ending_faults(c.music, texts[row]):
                    report[ENDING_FAULTS[name]] = report.get(ENDING_FAULTS[name], 0) + 1
    return texts


def constraint_tables(tokenizer, settings: SamplingSettings, vocabulary: Vocabulary | None = None):
    """(vocabulary, grammar tables, rule tables or None) for constraints sampling as `settings` say."""
    vocabulary = vocabulary or Vocabulary.from_tokenizer(tokenizer)
    tables = decoding_tables(vocabulary, settings.num_voices, settings.voice_ranges)
    rules = rule_tables(vocabulary, settings.num_voices, settings.rules, settings.enabled_rules) \
        if settings.rules != OFF else None
    return vocabulary, tables, rules


@contextlib.contextmanager
def padding_past_context():
    """transformers reminds once that a batch has grown longer than the model's positions. In a
    batch of rows padded on the left, and of rows that closed while others still write, that
    length counts padding: the reminder is dropped while such a batch writes (a row's own
    positions run from its first word, and its tokens are bounded by its closing budget)."""
    logger = logging.getLogger("transformers.generation.stopping_criteria")

    def keep(record: logging.LogRecord) -> bool:
        return "exceeded the model's predefined maximum length" not in record.getMessage()

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def sample_batch(model, tokenizer, input_ids, attention_mask, processors, settings: SamplingSettings,
                 max_new_tokens: int, stops: list[int] | None, streamer=None):
    """transformers' generate(), sampling as `settings` say, with the grammar's processors."""
    import torch
    generation_config = copy.deepcopy(model.generation_config)
    generation_config.update(do_sample=True, temperature=settings.temperature, top_k=settings.top_k or None,
                             top_p=settings.top_p,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             cache_implementation="static" if len(input_ids) >= STATIC_CACHE_ROWS else None,
                             # no torch.compile of the forward pass on a GPU: every new batch
                             # width would compile again, a stall before the first note
                             disable_compile=True,
                             eos_token_id=stops)
    with torch.no_grad():
        return model.generate(input_ids, attention_mask=attention_mask, generation_config=generation_config,
                              logits_processor=processors, streamer=streamer)


def write_in_windows(model, tokenizer, text: str, measures: int | None, forced_measures: list[list[str]] | None,
                     seed: int | None, row: int, rule_report, settings: SamplingSettings, vocabulary) -> str:
    """A harmonization (or a piece of `measures` measures) that reached the end of the model's
    context, finished in windows: the measure it was writing is dropped, the last measures that
    fit in half the context become the next window's prompt (their key and time signatures
    stated again), and the next measures (of the melody) are written within the context after
    it; until the piece ends. A model writing past the positions it was trained on loses its way
    (see context_length); this keeps every note it writes within them, the previous measures
    always in view."""
    from scorelm import lm
    context = context_length(model)
    words = text.split()
    total = len(forced_measures) if forced_measures else measures
    for window in range(1, total + 1):
        if words[-1] == language.END:
            break
        kept = words[:len(words) - words[::-1].index(language.BAR) - 1]  # without the measure cut off
        done = kept.count(language.BAR)
        window_seed = None if seed is None else seed * 1013 + row * 37 + window
        new = None
        for most_tokens in (context // 2, 0) if done else ():  # if not even one measure fits after it: the last alone
            prompt = window_prompt(kept, most_tokens, tokenizer)
            shown = prompt.count(language.BAR)
            still = dict(forced_measures=[[]] * shown + forced_measures[done:]) if forced_measures \
                else dict(measures=shown + total - done)
            still.setdefault("measures", None)
            still.setdefault("forced_measures", None)
            result = _generate(model, tokenizer, prompt, 1, settings,
                               max_new_tokens=context - len(lm.piece_ids(tokenizer, prompt)), seed=window_seed,
                               vocabulary=vocabulary, rule_report=rule_report, one_window=True, **still)[0]
            new = result.split()[len(prompt.split()):]
            if language.END in new or new.count(language.BAR) >= 2:
                break
            new = None
        if new is None and forced_measures:
            raise UserError(f"measure {done + 1} of the melody does not fit in the model's context of {context} "
                            "tokens with the measure before it")
        if new is None:  # a free piece's measure longer than the context allows: written on past it, as before
            return _generate(model, tokenizer, " ".join(words), 1, settings, measures=total, forced_measures=None,
                             max_new_tokens=MEASURES_BUDGET, seed=window_seed, vocabulary=vocabulary,
                             rule_report=rule_report, one_window=True)[0]
        words = kept + new
    return " ".join(words)


def window_prompt(words: list[str], most_tokens: int, tokenizer) -> str:
    """The last complete measures of `words` that fit in `most_tokens` (at least one), as a piece
    of their own: the key and time signatures in force stated in its first measure. Built on the
    words, not on a parse: a parse would drop a tie still open into the next measure."""
    from scorelm import lm
    bars = [i for i, word in enumerate(words) if word == language.BAR]
    chosen = None
    for start in reversed(bars):
        stated = {word[:2]: word for word in words[:start] if word[:2] in ("K:", "T:")}  # the last of each
        header_end = start + 1
        while header_end < len(words) and words[header_end][:2] in ("K:", "T:", "P:", "L:"):
            header_end += 1
        header = {word[:2]: word for word in words[start + 1:header_end]}
        first = [stated.get(kind) if kind not in header else header[kind] for kind in ("K:", "T:")]
        rest = [word for word in words[start + 1:header_end] if word[:2] not in ("K:", "T:")]
        text = " ".join([language.BAR] + [word for word in first if word] + rest + words[header_end:])
        if chosen is not None and len(lm.piece_ids(tokenizer, text)) > most_tokens:
            break
        chosen = text
    return chosen


ENDING_FAULTS = {"final_chord": "closes off the tonic", "signature_tonic": "closes on a mode's final"}


def ending_faults(music: VoiceLeading, text: str) -> set[str]:
    """The rules the close of a piece (its text, `music` having followed it) breaks: final_chord,
    and (no melody given) signature_tonic, unless the bass closes on the tonic of the key music21
    finds for the whole piece; each only where enabled."""
    enabled, faults = music.t.enabled, set()
    if "final_chord" in enabled and music.end_breaks():
        faults.add("final_chord")
    if "signature_tonic" in enabled and music.free and music.closes_off_signature():
        if music.closing_bass() != analysed_tonic(language.parse(text)[0][0]):
            faults.add("signature_tonic")
    return faults


ENDING_TRIES = 3


class LastMeasures(NamedTuple):
    """Rows that each write their own piece's last measure again (rewrite_endings): per row, the
    piece up to its last bar line, its measures, and the report its rules fill."""
    prompts: list[str]
    measures: list[int]
    reports: list[dict]


def rewrite_ending(model, tokenizer, text: str, prompt: str, seed: int | None, row: int, rule_report,
                   settings: SamplingSettings, vocabulary, modal_only: bool = False) -> str:
    """rewrite_endings for one piece (row `row` of its batch)."""
    return rewrite_endings(model, tokenizer, [text], prompt, seed, [row], rule_report, settings, vocabulary,
                           [modal_only])[0]


def rewrite_endings(model, tokenizer, texts: list[str], prompt: str, seed: int | None, rows: list[int], rule_report,
                    settings: SamplingSettings, vocabulary, modal_only: list[bool],
                    progress: Progress | None = None) -> list[str]:
    """A piece closes where the model closes it; a model cannot know that the rules want a tonic
    chord with fermatas there, so when the last chord breaks final_chord (or, with no melody
    given, closes on a church mode's final: signature_tonic), the last measure is written again
    knowing that it is the last (those rules then shape the soprano's last note and the chord
    under it). Up to ENDING_TRIES times; the first that closes as the rules want wins. Where none
    does, the first that closes on a mode's final is still better than an ending off any tonic
    (not so where that is what the model wrote: modal_only); else the original stays. Never
    touches the user's prompt.

    The pieces (`rows`: their rows in the batch that wrote them) are written again side by side,
    each try of those still without a close together (left-padded to the longest), seeded by the
    try and the first row; with particles, where rows must share one prompt, one piece at a time.
    progress: the batch's Progress (each try shows a bar of its own; none where it is quiet)."""
    pending = {}  # index -> (the piece up to its last bar line, its measures)
    for index, text in enumerate(texts):
        words = text.split()
        last_bar = len(words) - 1 - words[::-1].index(language.BAR)
        if len(prompt.split()) <= last_bar + 1:  # else the last measure is (partly) the user's own
            pending[index] = (" ".join(words[:last_bar + 1]), words.count(language.BAR))
    written, fallback = list(texts), {}
    groups = [list(pending)] if settings.particles == 1 else [[index] for index in pending]
    for group in groups:
        for attempt in range(ENDING_TRIES):
            group = [index for index in group if index in pending]
            if not group:
                break
            reports = [{} for _ in group]
            rows_seed = None if seed is None else seed * 1009 + rows[group[0]] * 31 + attempt
            candidates = _generate(model, tokenizer, pending[group[0]][0], len(group), settings, measures=None,
                                   forced_measures=None, max_new_tokens=None, seed=rows_seed, vocabulary=vocabulary,
                                   rule_report=None,
                                   progress=None if progress is None else Progress(
                                       f"closing {len(group)} piece(s) again", progress.quiet),
                                   last_measures=LastMeasures([pending[index][0] for index in group],
                                                              [pending[index][1] for index in group], reports))
            for index, candidate, report in zip(group, candidates, reports):
                if "final_chord" in report or ENDING_FAULTS["final_chord"] in report:
                    continue
                if ENDING_FAULTS["signature_tonic"] not in report:
                    written[index] = written_again(candidate, report, rule_report)
                    del pending[index]
                else:
                    fallback.setdefault(index, (candidate, report))
    for index in pending:
        if index in fallback and not modal_only[index]:
            written[index] = written_again(*fallback[index], rule_report)
        elif rule_report is not None:
            rule_report["endings left as the model wrote them"] = \
                rule_report.get("endings left as the model wrote them", 0) + 1
    return written


def written_again(candidate: str, report: dict, rule_report: dict | None) -> str:
    if rule_report is not None:
        for name, count in report.items():
            rule_report[name] = rule_report.get(name, 0) + count
        rule_report["endings written again"] = rule_report.get("endings written again", 0) + 1
    return candidate
