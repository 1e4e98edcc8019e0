"""Writing music with a trained model: new pieces and continuations of a prompt, and
harmonizations of a melody, as infer.py and the scorecard ask for them."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from scorelm import language, lm, melody, model_folder, notation, render
from scorelm.decoding import (MEASURES_BUDGET, Progress, SamplingSettings, Vocabulary, context_length,
                              generate_texts)
from scorelm.decoding.rules import MIXED
from scorelm.model_folder import ModelCard
from scorelm.cli import UserError
from scorelm.prompt import check_prompt

DEFAULT_RULES = MIXED  # measured on validation with particles, against hard and off: README, "Choosing the default"
# Particles a piece, chosen on validation for each kind of piece (README, "Particles: one for a
# free piece, four for a harmonization"): under a given melody four brought the lower voices'
# chords, rhythm and intervals all closer to Bach's than one; a free piece's intervals and rhythm
# came closer with one, at 0.86 of unconstrained sampling's speed against 0.34.
FREE_PARTICLES = 1
HARMONIZATION_PARTICLES = 4
# Sequences decoded side by side at most (pieces times particles): more pieces are written in
# batches of this many, so that memory stays bounded however many are asked for (seeds seed,
# seed + pieces a batch, ...; a run within one batch is as before).
ROWS_PER_BATCH = 64
MAX_PARTICLES = ROWS_PER_BATCH


@dataclass
class LoadedModel:
    """A model folder loaded to write with: the model, its tokenizer, its card, and its
    vocabulary as the decoder sees it."""
    model: object
    tokenizer: object
    card: ModelCard
    vocabulary: Vocabulary
    folder: Path

    @classmethod
    def load(cls, folder, device: str = "auto") -> "LoadedModel":
        model, tokenizer, card = model_folder.load(folder, device)
        return cls(model, tokenizer, card, Vocabulary.from_tokenizer(tokenizer), Path(folder))

    def settings(self, **choices) -> SamplingSettings:
        """Sampling settings for this model's pieces: its usual voices, their ranges and layout."""
        card = self.card
        return SamplingSettings(num_voices=card.voices, voice_ranges=card.ranges(), parts=card.layout(), **choices)

    @property
    def context(self) -> int:
        return context_length(self.model)


def write(loaded: LoadedModel, prompt: str, settings: SamplingSettings, num_samples: int = 1, *,
          measures: int | None = None, max_new_tokens: int | None = None, seed: int | None = None,
          rule_report: dict | None = None, progress: Progress | None = None, notes: list | None = None) -> list[str]:
    """New pieces (prompt '|', or a new piece's header) or continuations of the prompt. A prompt
    in a meter the model hardly knows in its note values is written renotated and written back
    (melody.meter_for_the_model; only under the constraint, whose every word can be written
    back). The prompt must be grammatical and in the model's words (a one-line error). `notes`
    receives what the user is told of a renotation."""
    factor, shown = (Fraction(1), prompt) if not settings.constrain else melody.meter_for_the_model(prompt, loaded.card)
    if factor != 1 and notes is not None:
        notes.append(melody.renotation_note(prompt, factor, "writing"))
    if shown:
        check_prompt(shown, loaded.vocabulary, settings.num_voices)
    if max_new_tokens is None and measures:
        # the measures asked for come first, past the context if need be
        max_new_tokens = max(MEASURES_BUDGET, loaded.context - len(lm.piece_ids(loaded.tokenizer, shown)))
    texts = []
    for first, count in _shown(batches(num_samples, settings), progress):
        texts += generate_texts(loaded.model, loaded.tokenizer, shown, count, settings, measures=measures,
                                max_new_tokens=max_new_tokens, seed=None if seed is None else seed + first,
                                vocabulary=loaded.vocabulary, rule_report=rule_report, progress=progress)
    return [melody.written_back(text, factor) for text in texts]


def harmonize(loaded: LoadedModel, given: language.Piece, settings: SamplingSettings, num_samples: int = 1, *,
              seed: int | None = None, rule_report: dict | None = None, progress: Progress | None = None,
              fitted: melody.MelodyFit | None = None) -> list[str]:
    """Alto, tenor and bass (the model's lower voices) under the top voice of `given`, the
    melody kept word for word: the melody fitted to the model (melody.fit, or `fitted`), the
    lower voices written under the fit and written back in the melody's own note values, key
    and measures."""
    given = given.top_voice()
    fitted = fitted or melody.fit(given.to_text(), loaded.card, loaded.vocabulary)
    if not settings.constrain:
        raise ValueError("a harmonization needs the constrained decoder")
    budget = melody.harmonization_budget(fitted.forced, settings.num_voices)
    texts = []
    for first, count in _shown(batches(num_samples, settings), progress):
        texts += generate_texts(loaded.model, loaded.tokenizer, "", count, settings, forced_measures=fitted.forced,
                                max_new_tokens=budget, seed=None if seed is None else seed + first,
                                vocabulary=loaded.vocabulary, rule_report=rule_report, progress=progress)
    return [melody.restore_melody(fitted.written_back(text), given) for text in texts]


def infill(loaded: LoadedModel, piece: language.Piece, first: int, last: int, settings: SamplingSettings,
           num_samples: int = 1, *, seed: int | None = None, rule_report: dict | None = None,
           progress: Progress | None = None, voices: tuple[int, ...] | None = None) -> list[str]:
    """The piece with its measures `first` to `last` written again (numbered as the score numbers
    them: infilling.measure_numbers), `num_samples` ways; every word outside them kept, and the
    passage's own key, time signature and measure lengths. The model writes the passage knowing
    the music before and after it (infilling.py). `voices`: the voice numbers to write again (1:
    the top one; None: all), the others kept note for note inside the passage too."""
    from scorelm import infilling
    from scorelm.decoding.infill import write_passages
    if not loaded.card.infill_share or infilling.sentinel_ids(loaded.tokenizer) is None:
        raise UserError(f"{loaded.folder} was not trained to infill (train one with the config key infill_share "
                        f"above 0)")
    numbers = infilling.measure_numbers(piece)
    if not numbers[0] <= first <= last <= numbers[-1]:
        raise UserError(f"measures {first}-{last} are not within the piece's measures {numbers[0]}-{numbers[-1]}")
    if last - first + 1 > infilling.MAX_SPAN:
        raise UserError(f"measures {first}-{last} are {last - first + 1} measures: at most {infilling.MAX_SPAN} can be "
                        f"rewritten at once (the model learnt spans of 1 to {infilling.MAX_SPAN}); rewrite them in parts")
    text = piece.to_text()
    start, end = numbers.index(first), numbers.index(last) + 1
    before, passage, after = infilling.split_at_measures(text, start, end)
    if before:
        check_prompt(before, loaded.vocabulary, settings.num_voices)
    unknown = [word for word in after.split() if word not in loaded.vocabulary.ids_of]
    if unknown:
        raise UserError(f"word {unknown[0]!r} after the passage is not in the model's vocabulary")
    headers = infilling.measure_headers(passage)
    kept = None
    if voices is not None and set(voices) != set(range(1, piece.num_voices + 1)):
        kept = [{number: words for number, words in measure.items() if number not in voices}
                for measure in infilling.measure_voices(passage)]
        unknown = [word for measure in kept for words in measure.values() for word in words
                   if word not in loaded.vocabulary.ids_of]
        if unknown:
            raise UserError(f"word {unknown[0]!r} of a kept voice is not in the model's vocabulary")
    texts = []
    for first_piece, count in _shown(batches(num_samples, settings), progress):
        written = write_passages(loaded.model, loaded.tokenizer, before, after, headers, count, settings,
                                 seed=None if seed is None else seed + first_piece, vocabulary=loaded.vocabulary,
                                 rule_report=rule_report, progress=progress, kept=kept,
                                 rewritten=voices if kept else None)
        texts += [" ".join(part for part in (before, new, after) if part) for new in written]
    return texts


def harmonize_each(loaded: LoadedModel, melodies: list[language.Piece], fits: list[melody.MelodyFit],
                   settings: SamplingSettings, *, seed: int | None = None, rule_report: dict | None = None,
                   progress: Progress | None = None) -> list[str]:
    """One harmonization of each melody (its fit from melody.fit), several side by side: in
    batches of at most ROWS_PER_BATCH sequences, melodies of similar length together (a batch
    runs as long as its longest), seeds seed, seed + melodies a batch, ... Returned in the
    melodies' order."""
    order = sorted(range(len(melodies)), key=lambda index: len(fits[index].forced))
    harmonized: list[str] = [""] * len(melodies)
    for first, count in _shown(batches(len(order), settings), progress):
        group = order[first:first + count]
        budget = max(melody.harmonization_budget(fits[index].forced, settings.num_voices) for index in group)
        texts = generate_texts(loaded.model, loaded.tokenizer, "", len(group), settings,
                               melodies=[fits[index].forced for index in group], max_new_tokens=budget,
                               seed=None if seed is None else seed + first, vocabulary=loaded.vocabulary,
                               rule_report=rule_report, progress=progress)
        for index, text in zip(group, texts):
            harmonized[index] = melody.restore_melody(fits[index].written_back(text), melodies[index].top_voice())
    return harmonized


def batches(num_samples: int, settings: SamplingSettings) -> list[tuple[int, int]]:
    """(first piece, pieces) of each batch: at most ROWS_PER_BATCH sequences side by side."""
    per_batch = max(1, ROWS_PER_BATCH // settings.in_effect().particles)
    return [(first, min(per_batch, num_samples - first)) for first in range(0, num_samples, per_batch)]


def _shown(planned: list[tuple[int, int]], progress: Progress | None):
    """The batches, with a bar of them (pieces written, time left) where there are several."""
    if len(planned) < 2 or progress is None or progress.quiet:
        return planned
    import sys

    from tqdm import tqdm
    return tqdm(planned, desc="batches", unit="batch", file=sys.stderr, dynamic_ncols=True)


def render_texts(texts: list[str], stem: Path, formats: list[str], *, title: str, performance: render.Performance,
                 settings: dict, notes_html: str | None = None, warn=None, mark: tuple | None = None,
                 quiet: bool = False) -> list[Path]:
    """--render: each text's piece (repaired where it must be, the repairs said through `warn`)
    written in `formats` beside `stem`, and one page for the run; `mark`: a passage every piece
    shows coloured (notation.marked's first measure, end measure and parts); quiet: no progress bar."""
    pieces, repairs = [], []
    for text in texts:
        parsed, report = language.parse(text)
        if report.total and warn is not None:
            warn(f"repaired {report.total} problem(s) before rendering:\n" + "\n".join(report.lines()))
        pieces += parsed
        repairs += [report.lines()] * len(parsed)
    return render.render_pieces(pieces, stem, formats, title=title, performance=performance, settings=settings,
                                repairs=repairs, notes_html=[notes_html] * len(pieces) if notes_html else None,
                                page_title=f"{title}s" if len(pieces) > 1 else title,
                                marks=[mark] * len(pieces) if mark else None, quiet=quiet)


def melody_source_html(path: str, given: language.Piece) -> str:
    """The given melody on a harmonization's page: where it came from, engraved as given."""
    from scorelm import page
    svgs = notation.svg_pages(notation.musicxml_bytes(language.score_from_piece(given.top_voice(),
                                                                                title="The given melody")))
    scores = "".join(f'<div class="score melody">{page.responsive_svg(svg)}</div>' for svg in svgs)
    return (f'<details open><summary>The melody, from {page.esc(Path(path).name)}</summary>{scores}</details>'
            f'<p class="muted">Below: the harmonization (the melody unchanged, alto, tenor and bass written by the model).</p>')
