"""Sample scores from a trained ScoreLM model, continue or harmonize yours, or measure how
surprising each note of a piece is to the model.

    python infer.py "|"                                   # one new piece (| starts a measure)
    python infer.py "|" --key D --time 3/4 --measures 8   # with a header of your choice
    python infer.py "|" --num-samples 4 -o out.txt --render
    python infer.py --prompt-score mine.musicxml --prompt-measures 4
    python infer.py --harmonize melody.musicxml --render
    python infer.py --surprisal bwv66.6.mxl               # writes bwv66.6.surprisal.csv, .png, .html

Sampling is constrained by the language's grammar (every sample is a valid score) unless
--no-constrain is given. Text goes to standard output (or -o); --render writes MusicXML,
MIDI, PNG and MP3 (and WAV with --wav) next to the -o file (default: sample.*), and one page,
sample.html, with every piece engraved beside a player: open it in any browser.
"""
from __future__ import annotations

import argparse
import functools
import itertools
import math
import re
import sys
from fractions import Fraction
from pathlib import Path

from scorelm import language, lm, notation, render, sampling, voice_leading
from scorelm.cli import UserError, check_can_write, run

DEFAULT_RULES = "mixed"  # measured on validation with particles, against hard and off: README, "Choosing the default"
# Particles a piece, chosen on validation for each kind of piece (README, "Particles: one for a
# free piece, four for a harmonization"): under a given melody four brought the lower voices'
# chords, rhythm and intervals all closer to Bach's than one; a free piece's intervals and rhythm
# came closer with one, at 0.86 of unconstrained sampling's speed against 0.34.
FREE_PARTICLES = 1
HARMONIZATION_PARTICLES = 4
RENDER_FORMATS = ["musicxml", "midi", "png", "mp3"]


def key_signature(text: str) -> int:
    """--key: sharps (-7..7) or a key name: D, Bb, "F# minor", f#m."""
    try:
        sharps = int(text)
    except ValueError:
        from music21 import key
        name = "".join(text.replace("minor", "m").replace("major", "").split())
        minor = name.endswith("m")
        tonic = name[:-1] if minor else name
        if not re.fullmatch(r"[A-Ga-g][#b]?", tonic):
            raise UserError(f"--key {text!r}: give a number of sharps (-7..7) or a key such as D, Bb, 'F# minor'")
        tonic = tonic[0].upper() + tonic[1:].replace("b", "-")  # music21 writes flats as -
        sharps = key.Key(tonic.lower() if minor else tonic).sharps
    if not -7 <= sharps <= 7:
        raise UserError(f"--key {text!r}: at most 7 sharps or flats")
    return sharps


def build_prompt(args) -> str:
    if args.prompt_score:
        piece = read_piece(args.prompt_score)
        measures = piece.measures[:args.prompt_measures] if args.prompt_measures else piece.measures
        prompt = language.Piece(measures).to_text().rsplit(" ", 1)[0]  # without the closing ||
    else:
        prompt = " ".join(args.prompt.split())
    if args.key is not None or args.time is not None:
        if prompt != language.BAR:
            raise UserError("--key and --time set the header of a new piece: use them with the prompt '|'")
        header = [f"K:{key_signature(args.key) if args.key is not None else 0}"]
        header.append(f"T:{args.time or '4/4'}")
        if language.parse_token(header[1]) is None:
            raise UserError(f"--time {args.time!r} is not a time signature such as 4/4 or 3/2")
        prompt = " ".join([prompt, *header])
    return prompt


def read_piece(path: str) -> language.Piece:
    """The piece in a score file music21 reads, or in a text file of the score language (.txt:
    the first piece, which must need no repair)."""
    from music21 import converter
    if not Path(path).is_file():
        raise UserError(f"no such file: {path}")
    if Path(path).suffix.lower() == ".txt":
        pieces, report = language.parse(Path(path).read_text(errors="replace"))
        if not pieces:
            raise UserError(f"{path} holds no piece in the score language")
        if report.total:
            raise UserError(f"{path} is not valid score text: {report.repairs.most_common(1)[0][0]}")
        if len(pieces) > 1:
            print(f"note: {path} holds {len(pieces)} pieces; reading the first", file=sys.stderr)
        return pieces[0]
    try:
        score = converter.parse(path)
    except Exception as error:
        raise UserError(f"cannot read {path}: {' '.join(str(error).split())[:150]}") from None
    piece = language.piece_from_score(score)
    if not piece.measures:
        raise UserError(f"{path} holds no measures")
    return piece


def check_prompt(prompt: str, vocabulary: sampling.Vocabulary, num_voices: int) -> None:
    """Every word must be in the language and in the model's vocabulary, in grammatical order."""
    grammar = language.Grammar(num_voices)
    for word in prompt.split():
        token = language.parse_token(word)
        if token is None:
            raise UserError(f"prompt word {word!r} is not in the score language (see README: the language)")
        if word not in vocabulary.ids_of:
            raise UserError(f"prompt word {word!r} is not in the model's vocabulary")
        problem = grammar.violation(token)
        if problem is not None:
            raise UserError(f"prompt is not valid at {word!r}: {problem.value}")
        grammar.advance(token)
    if grammar.last is language.Kind.END:
        raise UserError("the prompt is a finished piece (ends with ||): nothing to continue")


def read_melody(path: str) -> language.Piece:
    """The melody to harmonize: the top voice of the file's piece."""
    melody = read_piece(path)
    if melody.num_voices != 1:
        print(f"note: {path} has several parts; harmonizing the top one", file=sys.stderr)
    return melody.top_voice()


# A time or key signature is the model's own when at least this share of its training pieces use it.
KNOWN_SHARE = 0.01


def known_headers(metadata: dict, kind: str) -> set[str] | None:
    """The header words ("T:3/4", "K:-2") of `kind` ("time_signatures" or "key_signatures") that
    the model knows by its scorelm.json's counts; None for a model saved before the count."""
    counts = metadata.get(kind)
    if not counts:
        return None
    total = sum(counts.values())
    return {word for word, count in counts.items() if count >= KNOWN_SHARE * total}


def meter_for_the_model(text: str, metadata: dict) -> tuple[Fraction, str]:
    """How the note values of a melody or prompt (its text) are scaled for the model to write
    with it, and the text so scaled (what the model writes is written back): 1, or 1/2 or 1/4
    where the text is in half- or whole-note beats (T:3/2, T:4/1) that the training split hardly
    used but the same meter in quarter-note beats is the model's own (the chorales' 3/4 and 4/4). A model that never saw a
    melody's meter writes the lower voices against its note values as if they were quarters:
    sixteenth-note runs and strings of rests under a hymn tune's half notes. 1 for a model whose
    scorelm.json predates the count."""
    known_words = known_headers(metadata, "time_signatures")
    meters = {word[2:] for word in text.split() if word.startswith("T:")}
    if not known_words or not meters:
        return Fraction(1), text
    known = {word[2:] for word in known_words}
    if meters <= known:
        return Fraction(1), text
    for factor in (Fraction(1, 2), Fraction(1, 4)):
        scaled = {language.scale_durations(f"T:{meter}", factor) for meter in meters}
        if all(word and word[2:] in known for word in scaled):
            shown = language.scale_durations(text, factor)
            if shown is not None:
                return factor, shown
    return Fraction(1), text


# A meter the chorales lack that is two measures of one they have: a melody in it is harmonized
# with each two measures shown as one (2/4, the meter of 158 of 530 Essen tunes, as 4/4).
PAIRED_METERS = {"2/4": "4/4"}


def measures_for_the_model(text: str, metadata: dict) -> tuple[tuple[str, list] | None, str]:
    """How a melody's measures are shown to the model, and the text so shown: None where its meter
    is the model's own (or it changes key or meter in mid-piece); else (its meter, the lengths of
    the measures each shown measure holds), with each two measures after a pickup written as one
    of PAIRED_METERS' meter where the model knows that one and hardly knows the melody's. Under 40
    Essen tunes in 2/4 (`T:2/4` a word the one-hour model never learned) the lower voices' chords
    came 10% closer to Bach's shown in 4/4, with fewer notes outside the key signature's scale
    (9.2% against 10.3%) and fewer consecutive fifths and octaves (README: folk tunes)."""
    known = known_headers(metadata, "time_signatures")
    meters = {word[2:] for word in text.split() if word.startswith("T:")}
    if not known or len(meters) != 1:
        return None, text
    meter = meters.pop()
    target = PAIRED_METERS.get(meter)
    if target is None or f"T:{meter}" in known or f"T:{target}" not in known:
        return None, text
    paired = language.paired_measures(language.parse(text)[0][0], target)
    if paired is None:
        return None, text
    return (meter, paired[1]), paired[0].to_text()


def key_for_the_model(text: str, metadata: dict, vocabulary: sampling.Vocabulary) -> tuple[str | None, str]:
    """The interval by which a melody (the top voice of `text`) is moved for the model to
    harmonize it, and the text so moved (what the model writes is moved back): None where the
    model has a word for each of its notes, or for the same sound in tied notes (melody_plan),
    and knows its key signature (at least KNOWN_SHARE of the training pieces use it, where
    scorelm.json counts them). Otherwise the smallest move, within an octave either way, that
    leaves both, the melody kept inside the soprano's range in the training split where it fits
    there: a folk tune climbing to B flat 5 or C6, which the chorales' sopranos never reach,
    goes down a step or a third; one in seven flats, a key signature no training piece is in (a
    word whose embedding the model never learned), goes to one that some are. Where no move
    shows every note as written (a duration the model has no words for, as a sixteenth rest),
    the move, or none, whose melody_plan joins fewest notes to a neighbour; melody_plan's error
    where none can."""
    known = known_headers(metadata, "key_signatures")

    def writable(shown: str, approximate: bool) -> bool:
        if known is not None and not {word for word in shown.split() if word.startswith("K:")} <= known:
            return False
        try:
            melody_plan(language.parse(shown)[0][0], vocabulary, approximate)
        except UserError:
            return False
        return True

    if writable(text, False):
        return None, text
    lowest, highest = language.voice_ranges(language.parse(text)[0][0].top_voice())[0] or (60, 60)
    ranges = metadata.get("voice_ranges", {}).get(str(metadata.get("voices")))
    low, high = ranges[0] if ranges else (lowest, highest)

    def outside(semitones: int) -> int:  # semitones beyond the soprano's range
        return max(0, low - lowest - semitones) + max(0, highest + semitones - high)

    order = sorted((s for s in range(-12, 13) if s), key=lambda s: (outside(s), abs(s), s))
    moves = []  # moved one by one, the first that shows every note as written taken (each costs ~15 ms)
    for semitones in order:
        moved = language.transposed_by(text, semitones)
        if moved is not None:
            if writable(moved[1], False):
                return moved
            moves.append(moved)
    # no move shows every note as written: the one that joins fewest to a neighbour (melody_plan)
    joinable = [moved for moved in [(None, text)] + moves if writable(moved[1], True)]
    if joinable:
        return min(joinable, key=lambda moved: len(joined_words(language.parse(moved[1])[0][0], vocabulary)))
    melody_plan(language.parse(text)[0][0], vocabulary)  # its error says which word is missing
    raise UserError("the melody's key signature is one the model hardly knows, in every key it could be moved to")


def written_back(text: str, factor: Fraction, interval: str | None = None, pairing: tuple | None = None) -> str:
    """What the constrained decoder wrote from a renotated, transposed or paired melody or prompt,
    in their own note values, key and measures (never out of the language: each measure as long
    as the given meter's, and moving back what was moved leaves every spelling inside it but for
    a triple sharp or flat, which is an error). Paired measures that were not all written (a
    harmonization cut short) are left as written."""
    if interval is not None:
        moved = language.transpose_text(text, language.inverse_interval(interval))
        if moved is None:
            raise UserError(f"what the model wrote {interval_words(interval)} cannot be moved back")
        text = moved
    if pairing is not None:
        pieces, report = language.parse(text)
        split = language.split_measures(pieces[0], pairing[1], pairing[0]) if pieces and not report.total else None
        text = split.to_text() if split is not None else text
    return text if factor == 1 else language.scale_durations(text, 1 / factor)


def interval_words(interval: str) -> str:
    """'M-2' -> 'a major second lower'."""
    from music21 import interval as m21interval
    moved = m21interval.Interval(interval)
    name = moved.niceName.lower()
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name} {'lower' if moved.direction < 0 else 'higher'}"


def melody_plan(melody: language.Piece, vocabulary, approximate: bool = True) -> list[list[str]]:
    """The forced words of each measure (bar line, header, V1 and the melody's notes) of the
    piece's top voice. A note or rest the model has no word for is shown to it as the same sound
    in words it knows (shown_words: tied notes, or the pitch spelled otherwise), and a grace note
    it does not know is left out of its view. Where none write it (a sixteenth rest, a dotted
    sixteenth) and `approximate`, its measure is shown with such notes joined to a neighbour
    (joined_rhythm). restore_melody puts the melody's own words back into what is written."""
    plan, tied_in = [], None
    for measure in _measures([word for word, _ in melody.top_voice().annotated_words()[:-1]]):
        start = measure.index("V1") + 1 if "V1" in measure else len(measure)
        for word in measure[:start]:
            if word not in vocabulary.ids_of:
                raise UserError(f"the melody's {word!r} is not in the model's vocabulary")
        notes = measure[start:]
        missing = [word for word in notes if shown_words(word, vocabulary) is None]
        if missing and approximate:
            notes = joined_rhythm(notes, vocabulary, tied_in) or notes
        words = []
        for word in notes:
            respelled = shown_words(word, vocabulary)
            if respelled is None:
                raise UserError(f"the melody's {missing[0] if missing else word!r} is not in the model's vocabulary")
            words += respelled
        plan.append(measure[:start] + words)
        last = language.parse_token(words[-1]) if words else None
        tied_in = last.pitch if last is not None and last.kind is language.Kind.NOTE and last.tie else None
    return plan


def _measures(words: list[str]) -> list[list[str]]:
    """Words grouped by measure, each list beginning with its bar line."""
    out = []
    for word in words:
        if word == language.BAR:
            out.append([])
        out[-1].append(word)
    return out


def joined_rhythm(words: list[str], vocabulary: sampling.Vocabulary, tied_in: str | None = None) -> list[str] | None:
    """One measure of a melody (its note and rest words) shown to the model in note values it has
    words for, where some have none even as tied notes: each such note or rest is joined to the
    neighbour whose join the model can write (rather the join that keeps the earlier onset, then
    the shorter neighbour; joined again where need be), the join sounding the pitch of the note
    rather than a rest, of the longer of two notes, of the earlier if they are as long, and keeping
    a fermata either had. A dotted eighth and a sixteenth rest become a quarter; a dotted
    sixteenth and a thirty-second, an eighth. The lower voices are written against that outline
    and the melody's own words are put back (restore_melody), so the measure's length, and every
    voice's, is unchanged. `tied_in`: the pitch a tie from the
    measure before holds into this one (the join that begins the measure keeps it). None where a
    word is no note or rest, or the whole measure joined is still not writable."""
    events = []
    for word in words:
        token = language.parse_token(word)
        if token is None or token.kind not in (language.Kind.NOTE, language.Kind.REST):
            return None
        if not token.grace:
            events.append(language.Event(token.pitch, token.duration, token.tie, token.fermata))

    def writable(event: language.Event) -> bool:
        return shown_words(event.text, vocabulary) is not None

    def joined(first: language.Event, second: language.Event, index: int) -> language.Event:
        if index == 0 and tied_in is not None:
            pitch = first.pitch  # the tie into the measure goes on sounding
        elif first.tie and first.pitch == second.pitch:
            pitch = first.pitch  # a note tied to its own continuation: joined exactly
        else:
            pitch = max((first, second), key=lambda e: (e.pitch is not None, e.duration, e is first)).pitch
        return language.Event(pitch, first.duration + second.duration,
                              second.tie and pitch is not None and pitch == second.pitch, first.fermata or second.fermata)

    while True:
        bad = next((index for index, event in enumerate(events) if not writable(event)), None)
        if bad is None:
            return [event.text for event in events]
        if len(events) == 1:
            return None
        options = []
        for other in (bad - 1, bad + 1):
            if 0 <= other < len(events):
                first = min(bad, other)
                merged = joined(events[first], events[first + 1], first)
                # rather one the model can write, then one whose later onset goes (no note begins
                # earlier than written), then the shorter neighbour
                options.append((not writable(merged), merged.pitch != events[first].pitch, events[other].duration,
                                first, merged))
        *_, first, merged = min(options, key=lambda option: option[:4])
        events[first:first + 2] = [merged]


def joined_words(melody: language.Piece, vocabulary: sampling.Vocabulary) -> list[str]:
    """The melody's words that the model is shown joined to a neighbour (melody_plan)."""
    return [word for word, _ in melody.top_voice().annotated_words()
            if (token := language.parse_token(word)) is not None
            and token.kind in (language.Kind.NOTE, language.Kind.REST)
            and shown_words(word, vocabulary) is None]


def shown_words(word: str, vocabulary: sampling.Vocabulary) -> list[str] | None:
    """The words a melody's note or rest is shown to the model as, the same sound: the word itself
    where the model has it, else tied notes (tied_respelling), spelled as written or else
    enharmonically with one accidental fewer or more (E4 for a source's F flat 4, which the
    chorales never write: rather than the whole tune moved for that one spelling). None where
    none of these are words the model has."""
    if word in vocabulary.ids_of:
        return [word]
    respelled = tied_respelling(word, vocabulary)
    if respelled is not None:
        return respelled
    token = language.parse_token(word)
    if token is None or token.kind is not language.Kind.NOTE:
        return None
    for spelling in enharmonic_spellings(token.pitch):
        other = spelling + word[len(token.pitch):]
        if other in vocabulary.ids_of:
            return [other]
        respelled = tied_respelling(other, vocabulary)
        if respelled is not None:
            return respelled
    return None


@functools.lru_cache(maxsize=None)
def enharmonic_spellings(pitch: str) -> tuple[str, ...]:
    """The same key on the keyboard spelled otherwise, with at most one sharp or flat: Fb4 ->
    (E4,), C#5 -> (Db5,), in music21's order."""
    from music21 import pitch as music21_pitch
    return tuple(other.nameWithOctave.replace("-", "b") for other in
                 music21_pitch.Pitch(language.music21_pitch_name(pitch)).getAllCommonEnharmonics(alterLimit=1))


def tied_respelling(word: str, vocabulary: sampling.Vocabulary, depth: int = 3) -> list[str] | None:
    """The same note (or rest) written as up to `depth` tied notes of durations the model knows,
    the fermata on the first that can carry it, the word's own tie on the last: 'F#4:6^' ->
    ['F#4:4^~', 'F#4:2']. [] for a grace note (it takes no time: leaving it out of the model's
    view changes no other voice). None if there is none."""
    token = language.parse_token(word)
    if token is None or token.kind not in (language.Kind.NOTE, language.Kind.REST):
        return None
    if token.grace:
        return []
    head = token.pitch if token.kind is language.Kind.NOTE else "R"
    tie = "~" if token.kind is language.Kind.NOTE else ""  # a rest's parts follow one another untied
    known = vocabulary.ids_of
    durations = sorted({known_token.duration for known_token in vocabulary.symbol.values()
                        if known_token.kind is token.kind and known_token.duration
                        and (known_token.pitch if token.kind is language.Kind.NOTE else "R") == head
                        and known_token.duration < token.duration}, reverse=True)
    # the fermata where the note begins if any split allows it (the lower voices place theirs by it)
    for fermata_first, first in itertools.product((True, False) if token.fermata else (False,), durations):
        head_word = f"{head}:{language.format_duration(first)}{'^' if fermata_first else ''}{tie}"
        if head_word not in known:
            continue
        tail = (f"{head}:{language.format_duration(token.duration - first)}"
                f"{'^' if token.fermata and not fermata_first else ''}{'~' if token.tie else ''}")
        if tail in known:
            return [head_word, tail]
        further = tied_respelling(tail, vocabulary, depth - 1) if depth > 2 else None
        if further:
            return [head_word, *further]
    return None


def restore_melody(text: str, melody: language.Piece) -> str:
    """A harmonization with the melody's own words in its top voice, measure by measure (see
    melody_plan: the model may have been shown some of them respelled)."""
    written = _measures(text.split())
    given = _measures(melody.top_voice().to_text().split())
    if len(written) != len(given):
        return text  # not finished as planned: left as it is
    words = []
    for mine, theirs in zip(written, given):
        theirs = theirs[theirs.index("V1"):len(theirs) - (theirs[-1] == language.END)]
        lower = mine.index("V2") if "V2" in mine else len(mine) - (mine[-1] == language.END)
        words += mine[:mine.index("V1")] + theirs + mine[lower:]
    return " ".join(words)


def harmonization_budget(forced: list[list[str]], num_voices: int) -> int:
    """Tokens for a harmonization: the forced words, up to 40 per lower voice and measure, the end."""
    return sum(len(m) for m in forced) + len(forced) * (num_voices - 1) * 40 + 2


def evaluation_report(model, tokenizer, metadata, args, performance: render.Performance) -> int:
    """The scorecard: bits per note beside a Kneser-Ney baseline; music statistics of free samples
    and of harmonizations of every soprano of the split (test, or validation for choosing
    settings), each beside Bach's own chorales of that split."""
    import json

    from scorelm import dataset, evaluation
    model_dir = Path(args.model)
    train_config = json.loads((model_dir / "train_config.json").read_text()) \
        if (model_dir / "train_config.json").is_file() else {}
    folder = Path(args.dataset or train_config.get("dataset", "dataset"))
    split = args.split
    if not (folder / f"{split}.jsonl").is_file():
        raise UserError(f"no dataset in {folder}/ (pass --dataset)")
    texts = {name: [r["text"] for r in dataset.read_records(folder / f"{name}.jsonl")] for name in dataset.SPLITS}
    if not texts["test"] or not texts["validation"]:
        raise UserError(f"{folder}/ needs non-empty validation and test splits")
    stem = args.output.with_suffix("") if args.output else model_dir / "evaluation"
    for path in (stem.with_suffix(".json"), stem.with_suffix(".png"), render.page_path(stem)):
        check_can_write(path, args.overwrite)
    print(f"scoring the {split} split ({len(texts[split])} pieces)", file=sys.stderr)
    max_length = train_config.get("max_length", 1024)
    model_metrics = lm.evaluate_texts(model, tokenizer, texts[split], max_length)
    print("fitting Kneser-Ney n-grams on the training split", file=sys.stderr)
    ngram = evaluation.ngram_bits_per_note(tokenizer, texts["train"], texts["validation"], texts["test"])
    settings = {"rules": args.rules, "skip_rules": args.skip_rule, "temperature": args.temperature,
                "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed or 0}
    particles = {"sample_particles": args.particles or FREE_PARTICLES,
                 "harmonization_particles": args.particles or HARMONIZATION_PARTICLES}
    vocabulary = sampling.Vocabulary.from_tokenizer(tokenizer)
    samples, sample_report = free_samples(model, tokenizer, metadata, vocabulary, args.num_samples or 100,
                                          args.max_new_tokens, particles=particles["sample_particles"], **settings)
    count = args.harmonizations if args.harmonizations is not None else len(texts[split])
    harmonized, originals, harmonize_report = harmonize_all(model, tokenizer, metadata, vocabulary,
                                                            texts[split][:count],
                                                            particles=particles["harmonization_particles"], **settings)
    settings.update(particles)
    print("computing music statistics", file=sys.stderr)
    reference = evaluation.corpus_pitch_classes(texts["train"])
    bach = evaluation.music_statistics(texts[split], reference)
    columns = {"samples": {"bits_per_note": model_metrics["bits_per_note"],
                           **evaluation.music_statistics(samples, reference, bach)},
               "harmonized": {**evaluation.music_statistics(harmonized, reference, bach),
                              **evaluation.agreement(harmonized, originals)},
               "n-gram": {"bits_per_note": ngram[f"{split}_bits_per_note"], "order": ngram["order"]},
               "Bach": {**bach, **evaluation.distribution_distances(bach, bach)}}
    for column in columns.values():
        column.pop("_histograms", None)
    print(f"{split} split: {len(texts[split])} pieces of Bach; {len(samples)} free samples; "
          f"{len(harmonized)} harmonized sopranos; rules {args.rules}, "
          f"{particles['sample_particles']} / {particles['harmonization_particles']} particle(s) a sample / a harmonization")
    print(evaluation.format_table(columns))
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(
        {"columns": columns, "settings": settings, "samples": samples, "harmonizations": harmonized,
         "rule_fallbacks": {"samples": sample_report, "harmonizations": harmonize_report},
         "dataset": str(folder), "split": split, "ngram_order": ngram["order"]}, indent=1) + "\n")
    evaluation.plot_table(columns, stem.with_suffix(".png"))
    html_path = scorecard_page(columns, stem, samples, harmonized, settings, args, performance)
    print(f"wrote {stem.with_suffix('.json')}, {stem.with_suffix('.png')} and {html_path}")
    return 0


PAGE_EXAMPLES = 2  # free samples and harmonizations each, engraved and played on the scorecard's page


def scorecard_page(columns: dict, stem: Path, samples: list[str], harmonized: list[str], settings: dict,
                   args, performance: render.Performance) -> Path:
    """The scorecard as a page: the table, the plots, and a few of the pieces to see and hear."""
    from scorelm import evaluation, page
    intro = (f'<section class="block"><h2>Scorecard ({page.esc(args.split)} split)</h2>'
             f'{page.table_html(columns, evaluation.ROWS)}'
             f'{page.image_html(stem.with_suffix(".png").read_bytes(), "the scorecard plotted")}</section>')
    chosen = [(f"Free sample {n + 1}", text) for n, text in enumerate(samples[:PAGE_EXAMPLES])] + \
        [(f"Harmonization {n + 1}", text) for n, text in enumerate(harmonized[:PAGE_EXAMPLES])]
    pieces, titles, repairs = [], [], []
    for title, text in chosen:
        parsed, report = language.parse(text)
        if parsed:
            pieces.append(parsed[0])
            titles.append(title)
            repairs.append(report.lines())
    render.render_pieces(pieces, stem, [], title="Scorecard", titles=titles, repairs=repairs,
                         performance=performance, intro_html=intro,
                         page_title=f"ScoreLM scorecard: {Path(args.model).name}",
                         settings={"model": args.model, **{k: v for k, v in settings.items() if v}})
    return render.page_path(stem)


def free_samples(model, tokenizer, metadata, vocabulary, count: int, max_new_tokens: int | None, *, seed: int,
                 **settings):
    """`count` new pieces from '|', ten at a time (seeds seed, seed+10, ...), and the rules' report."""
    from tqdm import tqdm
    voices = metadata["voices"]
    samples, report = [], {}
    for first in tqdm(range(0, count, 10), desc="sampling", unit="batch", file=sys.stderr):
        samples += sampling.generate_texts(
            model, tokenizer, "|", min(10, count - first), num_voices=voices,
            voice_ranges=metadata.get("voice_ranges", {}).get(str(voices)), parts=sampling.layout_of(metadata, voices),
            max_new_tokens=max_new_tokens, seed=seed + first, vocabulary=vocabulary, rule_report=report, **settings)
    return samples, report


def harmonize_all(model, tokenizer, metadata, vocabulary, texts: list[str], *, seed: int, **settings):
    """Alto, tenor and bass written under the soprano of each piece (seed per piece): the
    harmonizations, the pieces they harmonize, and the rules' report. A melody with a note no
    words of the model can write (melody_plan) is skipped (said on stderr)."""
    from tqdm import tqdm
    voices = metadata["voices"]
    harmonized, originals, report = [], [], {}
    for index, text in enumerate(tqdm(texts, desc="harmonizing", unit="piece", file=sys.stderr)):
        piece = language.parse(text)[0][0]
        factor, shown = meter_for_the_model(text, metadata)
        pairing, shown = measures_for_the_model(shown, metadata)
        try:
            interval, shown = key_for_the_model(shown, metadata, vocabulary)
            forced = melody_plan(language.parse(shown)[0][0], vocabulary)
        except UserError as error:
            tqdm.write(f"note: piece {index + 1} not harmonized: {error}", file=sys.stderr)
            continue
        originals.append(text)
        budget = harmonization_budget(forced, voices)
        written = sampling.generate_texts(
            model, tokenizer, "", 1, num_voices=voices, voice_ranges=metadata.get("voice_ranges", {}).get(str(voices)),
            forced_measures=forced, max_new_tokens=budget, seed=seed + index, vocabulary=vocabulary,
            rule_report=report, **settings)
        harmonized += [restore_melody(written_back(one, factor, interval, pairing), piece) for one in written]
    return harmonized, originals, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("prompt", nargs="?", default="|", help="score text to continue (default: '|', a new piece)")
    parser.add_argument("--model", default="score-lm", help="trained model directory (default: score-lm)")
    parser.add_argument("--num-samples", type=int, help="pieces to sample, in one batch (default 1)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest tokens (0: all)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    parser.add_argument("--max-new-tokens", type=int,
                        help="most tokens to write (default: what the model's context holds after the prompt; "
                             "the piece is closed within them)")
    parser.add_argument("--measures", type=int, help="end the piece after N measures")
    parser.add_argument("--key", help="key signature of a new piece: sharps, or a key such as D, Bb, 'F# minor'")
    parser.add_argument("--time", help="time signature of a new piece, e.g. 3/4")
    parser.add_argument("--seed", type=int, help="same seed, same samples")
    parser.add_argument("--no-constrain", action="store_true", help="sample without the grammar (and the rules)")
    parser.add_argument("--rules", choices=voice_leading.MODES, default=DEFAULT_RULES,
                        help=f"voice-leading rules: hard forbids what breaks them, soft makes it unlikely, "
                             f"mixed holds each rule at its own strength: hard for "
                             f"{', '.join(r.name for r in voice_leading.RULES if r.strength == 'hard')}, soft for "
                             f"the rest (default {DEFAULT_RULES})")
    parser.add_argument("--skip-rule", action="append", default=[], metavar="RULE",
                        choices=voice_leading.RULE_NAMES,
                        help="switch one rule off (repeatable): " + "; ".join(
                            f"{rule.name}: {rule.what}" for rule in voice_leading.RULES))
    parser.add_argument("--particles", type=int, metavar="K",
                        help="with rules on, write each piece as the survivor of K sequences sampled side by "
                             "side and resampled by how much of the model's probability the rules leave them, "
                             "so that voices are not driven into a corner; K times the sequences, about "
                             f"K/2 times the time (default {HARMONIZATION_PARTICLES} harmonizing a melody, "
                             f"{FREE_PARTICLES} otherwise; 1: each rule-breaking note struck out as it comes)")
    parser.add_argument("--prompt-score", metavar="FILE", help="continue this score (any format music21 reads)")
    parser.add_argument("--prompt-measures", type=int, metavar="N", help="use only its first N measures")
    parser.add_argument("--harmonize", metavar="MELODY_FILE", help="write alto, tenor and bass under this melody")
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
    parser.add_argument("--dataset", help="--evaluate's dataset (default: the one the model was trained on)")
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
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    args = parser.parse_args(argv)
    for name in ("num_samples", "max_new_tokens", "measures", "prompt_measures", "harmonizations", "particles"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.temperature < math.inf or not 0 < args.top_p <= 1:
        raise UserError("--temperature must be a positive number and --top-p in (0, 1]")
    if args.top_k < 0:
        raise UserError(f"--top-k must be 0 (all tokens) or more, not {args.top_k}")
    if args.seed is not None and not 0 <= args.seed < 2 ** 32:
        raise UserError(f"--seed must be from 0 to 2**32 - 1, not {args.seed}")
    performance = render.performance_of(args)  # --tempo and --fermata-hold checked before any work

    if args.surprisal:
        from scorelm.analysis import report
        return report.analyse(args.model, report.AnalysisSettings(args.surprisal, args.output, args.overwrite,
                                                                   args.distributions, args.short_term,
                                                                   performance, args.device))
    model, tokenizer, metadata = sampling.load_model_dir(args.model, args.device)
    if args.evaluate:
        return evaluation_report(model, tokenizer, metadata, args, performance)
    args.num_samples = args.num_samples or 1
    num_voices = metadata["voices"]
    vocabulary = sampling.Vocabulary.from_tokenizer(tokenizer)
    melody = read_melody(args.harmonize) if args.harmonize else None
    prompt = "" if melody else build_prompt(args)
    given = melody.to_text() if melody else prompt
    # renotated only for the constrained decoder, whose every word can be written back
    factor, shown = (Fraction(1), given) if args.no_constrain else meter_for_the_model(given, metadata)
    if factor != 1:
        meter = next(word[2:] for word in given.split() if word.startswith("T:"))
        print(f"note: the model hardly knows {meter}; {'harmonizing the melody' if melody else 'writing'} in "
              f"{language.scale_durations(f'T:{meter}', factor)[2:]} (every note value "
              f"{'halved' if factor == Fraction(1, 2) else 'a quarter as long'}) and writing it back in {meter}",
              file=sys.stderr)
    interval = pairing = None
    if melody:
        pairing, shown = measures_for_the_model(shown, metadata)
        if pairing:
            print(f"note: the model hardly knows {pairing[0]}; harmonizing the melody in {PAIRED_METERS[pairing[0]]}, "
                  f"two measures as one, and writing it back in {pairing[0]}", file=sys.stderr)
        interval, shown = key_for_the_model(shown, metadata, vocabulary)
        if interval:
            print(f"note: the model hardly knows the melody's key signature or has no words for some of its "
                  f"notes; harmonizing it {interval_words(interval)} and writing it back at its own pitch",
                  file=sys.stderr)
        shown_melody = language.parse(shown)[0][0]
        forced = melody_plan(shown_melody, vocabulary)
        joined = written_back(" ".join(joined_words(shown_melody, vocabulary)), factor, interval).split()
        if joined:  # said in the melody's own key and note values
            print(f"note: the model has no words for {len(joined)} of the melody's notes and rests even as tied "
                  f"notes ({', '.join(sorted(set(joined))[:3])}{', ...' if len(set(joined)) > 3 else ''}): it "
                  f"harmonizes them joined to a neighbouring note, and the melody is written as it is", file=sys.stderr)
    else:
        forced, prompt = None, shown
    if prompt:
        check_prompt(prompt, vocabulary, num_voices)
    if forced and args.no_constrain:
        raise UserError("--harmonize needs the constrained decoder; drop --no-constrain")
    stem = args.output.with_suffix("") if args.output else Path("sample")
    formats = RENDER_FORMATS + ["wav"] * args.wav
    if args.output or args.render:
        planned = ([args.output] if args.output else []) + (
            render.planned_paths(stem, args.num_samples, formats, with_page=True) if args.render else [])
        if args.output and args.render and args.output in planned[1:]:
            raise UserError(f"--render writes {args.output} itself; give the text another name (-o "
                            f"{args.output.with_suffix('.txt')})")
        for path in planned:
            check_can_write(path, args.overwrite)
    max_new_tokens = args.max_new_tokens
    context = sampling.context_length(model)
    if forced:
        max_new_tokens = harmonization_budget(forced, num_voices)
    elif max_new_tokens is None and args.measures:
        # the measures asked for come first, past the context if need be
        max_new_tokens = max(sampling.MEASURES_BUDGET, context - len(lm.piece_ids(tokenizer, prompt)))

    particles = args.particles or (HARMONIZATION_PARTICLES if forced else FREE_PARTICLES)
    rule_report: dict = {}
    texts = sampling.generate_texts(
        model, tokenizer, prompt, args.num_samples, constrain=not args.no_constrain, num_voices=num_voices,
        voice_ranges=metadata.get("voice_ranges", {}).get(str(num_voices)), measures=args.measures,
        parts=sampling.layout_of(metadata, num_voices),
        forced_measures=forced, max_new_tokens=max_new_tokens, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, seed=args.seed, vocabulary=vocabulary, rules="off" if args.no_constrain else args.rules,
        skip_rules=args.skip_rule, rule_report=rule_report, particles=particles)
    texts = [written_back(text, factor, interval, pairing) for text in texts]
    if melody is not None:
        texts = [restore_melody(text, melody) for text in texts]
    if rule_report:
        print("voice-leading rules: " + ", ".join(f"{what} {count}" for what, count in rule_report.items()),
              file=sys.stderr)
    output = "\n".join(texts) + "\n"
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(output)
    else:
        sys.stdout.write(output)
    if args.render:
        pieces, repairs = [], []
        for text in texts:
            parsed, report = language.parse(text)
            if report.total:
                print(f"repaired {report.total} problem(s) before rendering:\n" + "\n".join(report.lines()),
                      file=sys.stderr)
            pieces += parsed
            repairs += [report.lines()] * len(parsed)
        title = f"Harmonization of {Path(args.harmonize).stem}" if args.harmonize else "ScoreLM sample"
        settings = {"model": args.model, "seed": args.seed, "temperature": args.temperature,
                    "top-k": args.top_k or None, "top-p": args.top_p if args.top_p < 1 else None,
                    "rules": "off (unconstrained)" if args.no_constrain else args.rules,
                    "rules switched off": ", ".join(args.skip_rule), "particles": particles if particles > 1 else None,
                    "prompt": prompt if prompt.strip() != "|" else None,
                    "melody": str(args.harmonize) if args.harmonize else None,
                    "voice-leading fallbacks": ", ".join(f"{k} {v}" for k, v in rule_report.items())}
        notes = [melody_source_html(args.harmonize)] * len(pieces) if args.harmonize else None
        for path in render.render_pieces(pieces, stem, formats, title=title, performance=performance,
                                         settings=settings, repairs=repairs, notes_html=notes,
                                         page_title=f"{title}s" if len(pieces) > 1 else title):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def melody_source_html(path: str) -> str:
    """The given melody on a harmonization's page: where it came from, engraved as given."""
    from scorelm import page
    melody = read_piece(path).top_voice()
    svgs = notation.svg_pages(notation.musicxml_bytes(language.score_from_piece(melody, title="The given melody")))
    scores = "".join(f'<div class="score melody">{page.responsive_svg(svg)}</div>' for svg in svgs)
    return (f'<details open><summary>The melody, from {page.esc(Path(path).name)}</summary>{scores}</details>'
            f'<p class="muted">Below: the harmonization (the melody unchanged, alto, tenor and bass written by the model).</p>')


if __name__ == "__main__":
    run(main)
