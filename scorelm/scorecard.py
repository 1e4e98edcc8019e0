"""The scorecard (infer.py --evaluate): bits per note beside a Kneser-Ney baseline; music
statistics of free samples and of harmonizations of every soprano of a split (test, or
validation for choosing settings), each beside Bach's own chorales of that split; for a model
trained to infill, passages in the middle of the split's chorales written again (all voices,
and the inner voices alone) beside the same passages of Bach's (passages.py): a table, JSON, a
plot and a page."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from scorelm import files, infilling, language, lm, passages, render, writing
from scorelm.cli import UserError, check_can_write
from scorelm.decoding import Progress, SamplingSettings

PAGE_EXAMPLES = 2  # free samples and harmonizations each, engraved and played on the scorecard's page


@dataclass
class ScorecardSettings:
    """What the scorecard measures and where it writes (the sampling settings travel beside)."""
    split: str = "test"  # test to report, validation to choose settings
    dataset: Path | None = None  # default: the one the model was trained on
    samples: int = 100  # free samples
    harmonizations: int | None = None  # the first N sopranos of the split (None: all)
    sample_particles: int = writing.FREE_PARTICLES
    harmonization_particles: int = writing.HARMONIZATION_PARTICLES
    max_new_tokens: int | None = None
    seed: int = 0
    output: Path | None = None  # the stem's place (default: the model folder's evaluation.*)
    overwrite: bool = False
    performance: render.Performance | None = None
    quiet: bool = False


def report(loaded: writing.LoadedModel, sampling: SamplingSettings, options: ScorecardSettings) -> int:
    """The scorecard of a loaded model: printed, and written as JSON, PNG and a page."""
    from scorelm import dataset, evaluation
    folder = Path(options.dataset or loaded.card.dataset or "dataset")
    split = options.split
    if not (folder / f"{split}.jsonl").is_file():
        raise UserError(f"no dataset in {folder}/ (pass --dataset)")
    texts = {name: [r["text"] for r in dataset.read_records(folder / f"{name}.jsonl")] for name in dataset.SPLITS}
    if not texts["test"] or not texts["validation"]:
        raise UserError(f"{folder}/ needs non-empty validation and test splits")
    stem = options.output.with_suffix("") if options.output else loaded.folder / "evaluation"
    for path in (stem.with_suffix(".json"), stem.with_suffix(".png"), render.page_path(stem)):
        check_can_write(path, options.overwrite)
    say = (lambda line: None) if options.quiet else (lambda line: print(line, file=sys.stderr))
    say(f"scoring the {split} split ({len(texts[split])} pieces)")
    model_metrics = lm.evaluate_texts(loaded.model, loaded.tokenizer, texts[split], loaded.card.max_length or 1024)
    say("fitting Kneser-Ney n-grams on the training split")
    ngram = evaluation.ngram_bits_per_note(loaded.tokenizer, texts["train"], texts["validation"], texts["test"])
    samples, sample_report = free_samples(loaded, sampling.replace(particles=options.sample_particles),
                                          options.samples, options.max_new_tokens, options.seed, options.quiet)
    count = options.harmonizations if options.harmonizations is not None else len(texts[split])
    harmonized, originals, harmonize_report = harmonize_all(
        loaded, sampling.replace(particles=options.harmonization_particles), texts[split][:count], options.seed,
        options.quiet)
    settings = {"rules": sampling.rules, "skip_rules": list(sampling.skip_rules), "temperature": sampling.temperature,
                "top_k": sampling.top_k, "top_p": sampling.top_p, "seed": options.seed,
                "sample_particles": options.sample_particles,
                "harmonization_particles": options.harmonization_particles}
    reference = evaluation.corpus_pitch_classes(texts["train"])
    infilled = infilled_columns(loaded, sampling.replace(particles=options.sample_particles), texts[split],
                                reference, options.seed, options.quiet)
    say("computing music statistics")
    bach = evaluation.music_statistics(texts[split], reference)
    columns = {"samples": {"bits_per_note": model_metrics["bits_per_note"],
                           **evaluation.music_statistics(samples, reference, bach)},
               "harmonized": {**evaluation.music_statistics(harmonized, reference, bach),
                              **evaluation.agreement(harmonized, originals)},
               **{name: column for name, column in infilled.items() if name != "Bach spans"},
               "n-gram": {"bits_per_note": ngram[f"{split}_bits_per_note"], "order": ngram["order"]},
               "Bach": {**bach, **evaluation.distribution_distances(bach, bach)},
               **({"Bach spans": infilled["Bach spans"]} if infilled else {})}
    for column in columns.values():
        column.pop("_histograms", None)
    print(f"{split} split: {len(texts[split])} pieces of Bach; {len(samples)} free samples; "
          f"{len(harmonized)} harmonized sopranos; "
          + (f"a passage of 2 to 4 measures written again in {infilled['infilled']['pieces']} of them "
             f"(statistics with a measure either side); " if infilled else "") + f"rules {sampling.rules}, "
          f"{options.sample_particles} / {options.harmonization_particles} particle(s) a sample / a harmonization")
    print(evaluation.format_table(columns))
    files.write_text(stem.with_suffix(".json"), json.dumps(
        {"columns": columns, "settings": settings, "samples": samples, "harmonizations": harmonized,
         "rule_fallbacks": {"samples": sample_report, "harmonizations": harmonize_report},
         "dataset": str(folder), "split": split, "ngram_order": ngram["order"]}, indent=1) + "\n")
    evaluation.plot_table(columns, stem.with_suffix(".png"))
    html_path = page(columns, stem, samples, harmonized, settings, loaded.folder, split, options.performance,
                     options.quiet)
    print(f"wrote {stem.with_suffix('.json')}, {stem.with_suffix('.png')} and {html_path}")
    return 0


def infilled_columns(loaded: writing.LoadedModel, settings: SamplingSettings, texts: list[str], reference,
                     seed: int, quiet: bool = False) -> dict[str, dict]:
    """For a model trained to infill (nothing otherwise): a passage in the middle of each piece
    written again, all voices ("infilled") and the inner voices alone ("infilled inner"), and
    Bach's same passages ("Bach spans"), each with a measure on either side (passages.judge)."""
    if not loaded.card.infill_share or infilling.sentinel_ids(loaded.tokenizer) is None:
        return {}
    every = passages.judge(loaded, texts, settings, seed=seed, quiet=quiet)
    inner = passages.judge(loaded, texts, settings, voices=(2, 3), bits=False, seed=seed, quiet=quiet)
    ours, bach = every.columns(None, reference)
    inner_ours, _ = inner.columns((2, 3), reference)
    for column in (ours, inner_ours, bach):
        column.pop("_histograms", None)
    return {"infilled": ours, "infilled inner": inner_ours, "Bach spans": bach}


def page(columns: dict, stem: Path, samples: list[str], harmonized: list[str], settings: dict, model: Path,
         split: str, performance: render.Performance | None, quiet: bool = False) -> Path:
    """The scorecard as a page: the table, the plots, and a few of the pieces to see and hear."""
    from scorelm import evaluation
    from scorelm import page as html
    intro = (f'<section class="block"><h2>Scorecard ({html.esc(split)} split)</h2>'
             f'{html.table_html(columns, evaluation.ROWS)}'
             f'{html.image_html(stem.with_suffix(".png").read_bytes(), "the scorecard plotted")}</section>')
    chosen = [(f"Free sample {n + 1}", text) for n, text in enumerate(samples[:PAGE_EXAMPLES])] + \
        [(f"Harmonization {n + 1}", text) for n, text in enumerate(harmonized[:PAGE_EXAMPLES])]
    pieces, titles, repairs = [], [], []
    for title, text in chosen:
        parsed, parse_report = language.parse(text)
        if parsed:
            pieces.append(parsed[0])
            titles.append(title)
            repairs.append(parse_report.lines())
    render.render_pieces(pieces, stem, [], title="Scorecard", titles=titles, repairs=repairs,
                         performance=performance or render.Performance(), intro_html=intro,
                         page_title=f"ScoreLM scorecard: {Path(model).name}",
                         settings={"model": str(model), **{k: v for k, v in settings.items() if v}}, quiet=quiet)
    return render.page_path(stem)


def free_samples(loaded: writing.LoadedModel, settings: SamplingSettings, count: int, max_new_tokens: int | None,
                 seed: int, quiet: bool = False) -> tuple[list[str], dict]:
    """`count` new pieces from '|', the very pieces `infer.py "|" --num-samples count --seed seed`
    writes (writing.write: as many side by side as a batch holds), and the rules' report."""
    rule_report: dict = {}
    samples = writing.write(loaded, language.BAR, settings, count, max_new_tokens=max_new_tokens, seed=seed,
                            rule_report=rule_report, progress=Progress("sampling", quiet))
    return samples, rule_report


def harmonize_all(loaded: writing.LoadedModel, settings: SamplingSettings, texts: list[str], seed: int,
                  quiet: bool = False) -> tuple[list[str], list[str], dict]:
    """Alto, tenor and bass written under the soprano of each piece, several side by side
    (writing.harmonize_each): the harmonizations, the pieces they harmonize, and the rules'
    report. A melody with a note no words of the model can write (melody.melody_plan) is skipped
    (said on stderr)."""
    from scorelm import melody
    pieces, fits, originals, rule_report = [], [], [], {}
    for index, text in enumerate(texts):
        try:
            fits.append(melody.fit(text, loaded.card, loaded.vocabulary))
        except UserError as error:
            if not quiet:
                print(f"note: piece {index + 1} not harmonized: {error}", file=sys.stderr)
            continue
        originals.append(text)
        pieces.append(language.parse(text)[0][0])
    harmonized = writing.harmonize_each(loaded, pieces, fits, settings, seed=seed, rule_report=rule_report,
                                        progress=Progress("harmonizing", quiet))
    return harmonized, originals, rule_report
