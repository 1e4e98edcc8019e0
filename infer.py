"""Sample scores from a trained ScoreLM model, continue or harmonize yours, or measure how
surprising each note of a piece is to the model.

    python infer.py "|"                                   # one new piece (| starts a measure)
    python infer.py "|" --key D --time 3/4 --measures 8   # with a header of your choice
    python infer.py "|" --num-samples 4 -o out.txt --render
    python infer.py --prompt-score mine.musicxml --prompt-measures 4
    python infer.py --harmonize melody.musicxml --render
    python infer.py --infill mine.musicxml --measures 5-8 --num-samples 3   # rewrite a passage
    python infer.py --surprisal bwv66.6.mxl               # writes bwv66.6.surprisal.csv, .png, .html

Sampling is constrained by the language's grammar (every sample is a valid score) unless
--no-constrain is given. Text goes to standard output (or -o); --render writes MusicXML,
MIDI, PNG and MP3 (and WAV with --wav) next to the -o file (default: sample.*), and one page,
sample.html, with every piece engraved beside a player: open it in any browser. Progress goes
to standard error (none with --quiet).
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from scorelm import files, infilling, lm, melody, prompt, render, writing
from scorelm.cli import UserError, check_can_write, run
from scorelm.decoding import MODES, RULE_NAMES, RULES, Progress
from scorelm.decoding.rules import OFF

COUNTS = ("num_samples", "max_new_tokens", "measures", "prompt_measures", "harmonizations", "particles")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("prompt", nargs="?", default="|", help="score text to continue (default: '|', a new piece)")
    parser.add_argument("--model", default="score-lm", help="trained model directory (default: score-lm)")
    parser.add_argument("--num-samples", type=int, help="pieces to write (default 1), side by side in batches of at most "
                             f"{writing.ROWS_PER_BATCH} sequences (pieces times particles)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest tokens (0: all)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    parser.add_argument("--max-new-tokens", type=int,
                        help="most tokens to write (default: what the model's context holds after the prompt; "
                             "the piece is closed within them)")
    parser.add_argument("--measures", help="end the piece after N measures; with --infill, the measures to write "
                                           "again, A-B or A, numbered as the score numbers them (a pickup is 0)")
    parser.add_argument("--key", help="key signature of a new piece: sharps, or a key such as D, Bb, 'F# minor'")
    parser.add_argument("--time", help="time signature of a new piece, e.g. 3/4")
    parser.add_argument("--seed", type=int, help="same seed, same samples")
    parser.add_argument("--no-constrain", action="store_true", help="sample without the grammar (and the rules)")
    parser.add_argument("--rules", choices=MODES, default=writing.DEFAULT_RULES,
                        help=f"voice-leading rules: hard forbids what breaks them, soft makes it unlikely, "
                             f"mixed holds each rule at its own strength: hard for "
                             f"{', '.join(r.name for r in RULES if r.strength == 'hard')}, soft for "
                             f"the rest (default {writing.DEFAULT_RULES})")
    parser.add_argument("--skip-rule", action="append", default=[], metavar="RULE", choices=RULE_NAMES,
                        help="switch one rule off (repeatable): " + "; ".join(f"{r.name}: {r.what}" for r in RULES))
    parser.add_argument("--particles", type=int, metavar="K",
                        help="with rules on, write each piece as the survivor of K sequences sampled side by "
                             "side and resampled by how much of the model's probability the rules leave them, "
                             "so that voices are not driven into a corner; K times the sequences, about "
                             f"K/2 times the time (default {writing.HARMONIZATION_PARTICLES} harmonizing a melody, "
                             f"{writing.FREE_PARTICLES} otherwise; 1: each rule-breaking note struck out as it comes)")
    parser.add_argument("--prompt-score", metavar="FILE", help="continue this score (any format music21 reads)")
    parser.add_argument("--prompt-measures", type=int, metavar="N", help="use only its first N measures")
    parser.add_argument("--harmonize", metavar="MELODY_FILE", help="write alto, tenor and bass under this melody")
    parser.add_argument("--infill", metavar="SCORE",
                        help="write the measures --measures of this score (any format music21 reads, or score "
                             "text) again, knowing the music before and after them; every other note kept (a "
                             "model trained to infill: the config key infill_share)")
    parser.add_argument("--voices", metavar="LIST",
                        help="--infill: write only these voices again, the others kept inside the passage too: "
                             "soprano, alto, tenor, bass (a four-voice score) or numbers, 1 the top voice "
                             "(default: all)")
    parser.add_argument("--surprisal", metavar="SCORE",
                        help="information content and entropy of every note of this score (or of every piece of a "
                             "file or folder), of the event and of its pitch: CSV, coloured PNG and a page (a "
                             "folder: one CSV of all notes and a table of the pieces); with a cross-validated "
                             "--model (train.py with folds) each piece by the model that never saw it")
    parser.add_argument("--distributions", action="store_true",
                        help="--surprisal: add a cpitch.N column per pitch (MIDI N) with its predicted probability")
    parser.add_argument("--short-term", action="store_true",
                        help="--surprisal: combine the pitch measures with IDyOM's short-term model of each voice "
                             "(a PPM model of the piece so far, weighted as IDyOM weights it)")
    parser.add_argument("--evaluate", action="store_true",
                        help="the scorecard: bits per note beside a Kneser-Ney n-gram; music statistics "
                             "of --num-samples (default 100) free samples and of harmonizations of the "
                             "split's sopranos, beside Bach's chorales of the split: table, JSON, PNG")
    parser.add_argument("--dataset", type=Path, help="--evaluate's dataset (default: the one the model was trained on)")
    parser.add_argument("--harmonizations", type=int, metavar="N",
                        help="--evaluate harmonizes the first N sopranos of the split (default: all)")
    parser.add_argument("--split", choices=("test", "validation"), default="test",
                        help="--evaluate's split: test to report, validation to choose settings (default test)")
    parser.add_argument("-o", "--output", type=Path, help="write the text here (and --render's files beside it)")
    parser.add_argument("--render", action="store_true",
                        help="also write MusicXML, MIDI, PNG, MP3 and one HTML page for the run")
    render.add_performance_arguments(parser)
    parser.add_argument("--device", choices=lm.DEVICES, default="auto",
                        help="where the model runs: auto (default: a CUDA GPU, else Apple's MPS, else the CPU), "
                             "cpu, cuda or mps; a GPU computes in bf16 where it can")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes on standard error")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    args = parser.parse_args(argv)
    args.span = measure_span(args)
    for name in COUNTS:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.temperature < math.inf or not 0 < args.top_p <= 1:
        raise UserError("--temperature must be a positive number and --top-p in (0, 1]")
    if args.top_k < 0:
        raise UserError(f"--top-k must be 0 (all tokens) or more, not {args.top_k}")
    if args.seed is not None and not 0 <= args.seed < 2 ** 32:
        raise UserError(f"--seed must be from 0 to 2**32 - 1, not {args.seed}")
    if args.particles is not None and args.particles > writing.MAX_PARTICLES:
        raise UserError(f"--particles must be at most {writing.MAX_PARTICLES}")
    if args.harmonize and args.no_constrain:
        raise UserError("--harmonize needs the constrained decoder; drop --no-constrain")
    if args.voices and not args.infill:
        raise UserError("--voices chooses the voices --infill writes again: use it with --infill")
    return args


def measure_span(args) -> tuple[int, int] | None:
    """--measures: a count (a new piece's length), or with --infill the span A-B (or A) to write
    again, which it returns (args.measures then None)."""
    if args.measures is None:
        if args.infill:
            raise UserError("--infill needs --measures A-B: the measures to write again")
        return None
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", args.measures.strip())
    if match is None or (match.group(2) is not None and not args.infill):
        raise UserError(f"--measures must be a number of measures{' or A-B' if args.infill else ''}, "
                        f"not {args.measures!r}")
    if not args.infill:
        args.measures = int(match.group(1))
        return None
    first, last = int(match.group(1)), int(match.group(2) or match.group(1))
    if last < first:
        raise UserError(f"--measures {args.measures}: the span ends before it begins")
    if args.harmonize or args.prompt_score or args.no_constrain:
        raise UserError("--infill rewrites a passage of its own score: not with --harmonize, --prompt-score or "
                        "--no-constrain")
    args.measures = None
    return first, last


def planned_outputs(args, stem: Path, formats: list[str]) -> None:
    """Refuse, before any work, outputs that exist (without --overwrite) or cannot be written."""
    planned = ([args.output] if args.output else []) + (
        render.planned_paths(stem, args.num_samples, formats, with_page=True) if args.render else [])
    if args.output and args.render and args.output in planned[1:]:
        raise UserError(f"--render writes {args.output} itself; give the text another name (-o "
                        f"{args.output.with_suffix('.txt')})")
    for path in planned:
        check_can_write(path, args.overwrite)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    performance = render.performance_of(args)  # --tempo and --fermata-hold checked before any work
    warn = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    if args.quiet:
        from transformers.utils import logging as transformers_logging
        transformers_logging.set_verbosity_error()  # its reminders too
    if args.surprisal:
        from scorelm.analysis import report
        return report.analyse(args.model, report.AnalysisSettings(args.surprisal, args.output, args.overwrite,
                                                                   args.distributions, args.short_term,
                                                                   performance, args.device))
    loaded = writing.LoadedModel.load(args.model, args.device)
    choices = dict(constrain=not args.no_constrain, rules=OFF if args.no_constrain else args.rules,
                   skip_rules=tuple(args.skip_rule), temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    if args.evaluate:
        from scorelm import scorecard
        return scorecard.report(loaded, loaded.settings(**choices), scorecard.ScorecardSettings(
            split=args.split, dataset=args.dataset, samples=args.num_samples or 100, harmonizations=args.harmonizations,
            sample_particles=args.particles or writing.FREE_PARTICLES,
            harmonization_particles=args.particles or writing.HARMONIZATION_PARTICLES,
            max_new_tokens=args.max_new_tokens, seed=args.seed or 0, output=args.output, overwrite=args.overwrite,
            performance=performance, quiet=args.quiet))
    args.num_samples = args.num_samples or 1
    if args.infill:
        return infill(args, loaded, choices, performance, warn)
    given = prompt.read_melody(args.harmonize) if args.harmonize else None
    text = None if given else prompt.build_prompt(args.prompt, score=args.prompt_score, measures=args.prompt_measures,
                                                  key=args.key, time=args.time)
    fitted = melody.fit(given.to_text(), loaded.card, loaded.vocabulary) if given else None
    for line in fitted.notes() if fitted else []:
        warn(f"note: {line}")
    stem = args.output.with_suffix("") if args.output else Path("sample")
    formats = render.DEFAULT_FORMATS + ["wav"] * args.wav
    if args.output or args.render:
        planned_outputs(args, stem, formats)
    particles = args.particles or (writing.HARMONIZATION_PARTICLES if given else writing.FREE_PARTICLES)
    settings = loaded.settings(**choices, particles=particles)
    rule_report: dict = {}
    progress = Progress("harmonizing" if given else "sampling", args.quiet)
    if given:
        texts = writing.harmonize(loaded, given, settings, args.num_samples, seed=args.seed, rule_report=rule_report,
                                  progress=progress, fitted=fitted)
    else:
        notes: list[str] = []
        texts = writing.write(loaded, text, settings, args.num_samples, measures=args.measures,
                              max_new_tokens=args.max_new_tokens, seed=args.seed, rule_report=rule_report,
                              progress=progress, notes=notes)
        for line in notes:
            warn(f"note: {line}")
    emit(args, texts, rule_report, warn)
    if args.render:
        title = f"Harmonization of {Path(args.harmonize).stem}" if args.harmonize else "ScoreLM sample"
        shown = {"model": args.model, "seed": args.seed, "temperature": args.temperature,
                 "top-k": args.top_k or None, "top-p": args.top_p if args.top_p < 1 else None,
                 "rules": "off (unconstrained)" if args.no_constrain else args.rules,
                 "rules switched off": ", ".join(args.skip_rule), "particles": particles if particles > 1 else None,
                 "prompt": text if text and text.strip() != "|" else None,
                 "melody": str(args.harmonize) if args.harmonize else None,
                 "voice-leading fallbacks": ", ".join(f"{k} {v}" for k, v in rule_report.items())}
        notes_html = writing.melody_source_html(args.harmonize, given) if given else None
        for path in writing.render_texts(texts, stem, formats, title=title, performance=performance, settings=shown,
                                         notes_html=notes_html, warn=warn, quiet=args.quiet):
            warn(f"wrote {path}")
    return 0


def emit(args, texts: list[str], rule_report: dict, warn) -> None:
    """What the rules had to give up (stderr), and the texts: to -o, or to standard output."""
    if rule_report:
        warn("voice-leading rules: " + ", ".join(f"{what} {count}" for what, count in rule_report.items()))
    output = "\n".join(texts) + "\n"
    if args.output:
        files.write_text(args.output, output)
    else:
        sys.stdout.write(output)


def infill(args, loaded: writing.LoadedModel, choices: dict, performance, warn) -> int:
    """--infill: the score with its measures args.span written again, --num-samples ways."""
    piece = prompt.read_piece(args.infill)
    voices = None
    if args.voices:
        try:
            voices = infilling.voice_numbers(args.voices, piece.num_voices)
        except ValueError as error:
            raise UserError(f"--voices: {error}") from None
    stem = args.output.with_suffix("") if args.output else Path("sample")
    formats = render.DEFAULT_FORMATS + ["wav"] * args.wav
    if args.output or args.render:
        planned_outputs(args, stem, formats)
    settings = loaded.settings(**choices, particles=args.particles or writing.FREE_PARTICLES)
    rule_report: dict = {}
    first, last = args.span
    texts = writing.infill(loaded, piece, first, last, settings, args.num_samples, seed=args.seed,
                           rule_report=rule_report, progress=Progress("infilling", args.quiet), voices=voices)
    emit(args, texts, rule_report, warn)
    if args.render:
        span = f"measures {first}-{last}" if last > first else f"measure {first}"
        if voices is not None:
            span += f" ({args.voices})"
        shown = {"model": args.model, "seed": args.seed, "temperature": args.temperature, "rules": args.rules,
                 "score": str(args.infill), "written again": span}
        numbers = infilling.measure_numbers(piece)
        # a voice is a part of its own where the score states no layout; otherwise the measures' every part
        parts = {number - 1 for number in voices} if voices is not None and piece.parts is None else None
        mark = (numbers.index(first), numbers.index(last) + 1, parts)
        for path in writing.render_texts(texts, stem, formats, title=f"{Path(args.infill).stem}, {span} written again",
                                         performance=performance, settings=shown, mark=mark,
                                         notes_html=f"<p>{span.capitalize()} written again, in red; every other "
                                                    f"note is the score's own.</p>", warn=warn,
                                         quiet=args.quiet):
            warn(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run(main)
