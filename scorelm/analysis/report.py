"""What ``infer.py --surprisal`` writes: for one score, a CSV of every note's information content
and entropy, the score coloured by them (PNG) and a page; for a folder or a file of many
pieces, one CSV of all their notes and a table of the pieces.

The model is one model folder, or a cross-validated folder (train.py with folds), in which case
each piece is analysed by the fold model that never saw it (or, for a piece no fold held out, by
every fold model, each one's rows marked).
"""
from __future__ import annotations

import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from scorelm import dataset, files, language, model_folder, notation, render
from scorelm.decoding import Vocabulary
from scorelm.analysis import folds, information
from scorelm.cli import UserError, check_can_write

# IDyOM's column names where it has one (melody.id, note.id, onset, dur, cpitch, probability,
# information.content, entropy, cpitch.*); onset and dur in quarter notes.
COLUMNS = ["melody.id", "melody.name", "note.id", "voice", "measure", "beat", "onset", "dur", "pitch", "cpitch",
           "word", "continues.tie", "probability", "information.content", "entropy", "cpitch.probability",
           "cpitch.information.content", "cpitch.entropy", "cpitch.model", "surprisal_bits", "alphabet", "model", "held.out"]
PIECE_COLUMNS = ["melody.id", "melody.name", "model", "held.out", "notes", "events", "mean.information.content",
                 "mean.entropy", "mean.cpitch.information.content", "mean.cpitch.entropy", "most.surprising"]


@dataclass
class Models:
    """The model (or fold models) to analyse with, loaded once each."""
    folder: Path
    manifest: folds.FoldManifest | None
    device: str = "cpu"

    def __post_init__(self):
        self._loaded: dict[str, tuple] = {}

    @classmethod
    def open(cls, folder, device: str = "cpu") -> "Models":
        folder = Path(folder)
        if folds.is_cross_validated(folder):
            return cls(folder, folds.FoldManifest.read(folder), device)
        if not (folder / "config.json").is_file():
            raise UserError(f"no trained model in {folder}/; train one with 'accelerate launch train.py' or pass --model")
        return cls(folder, None, device)

    def load(self, name: str | None):
        """(model, tokenizer, card, vocabulary, predictor) of a fold's model, or of the model."""
        if name not in self._loaded:
            model, tokenizer, card = model_folder.load(self.folder / name if name else self.folder, self.device)
            self._loaded[name] = (model, tokenizer, card, Vocabulary.from_tokenizer(tokenizer),
                                  information.model_predictor(model))
        return self._loaded[name]

    def voices(self) -> int:
        return self.load(self.manifest.models[0].name if self.manifest else None)[2].voices

    def for_piece(self, text: str) -> tuple[list[str | None], bool | None]:
        """Which models analyse the piece: (names, held out); (None's list, None) for one model."""
        if self.manifest is None:
            return [None], None
        return self.manifest.models_for(text)


def read_pieces(path: str) -> list[tuple[str, language.Piece]]:
    """(name, piece) of every piece a path holds: a score file (an ABC file may hold many tunes),
    score text (.txt: every piece, each needing no repair), or a folder of such files."""
    from music21 import stream
    source = Path(path)
    if source.is_dir():
        files, _ = dataset.find_score_files([str(source)])
        files = sorted(set(files) | {str(p) for p in source.rglob("*.txt")})
        if not files:
            raise UserError(f"no score files in {path}")
        return [item for file in files for item in read_pieces(file)]
    if not source.is_file():
        raise UserError(f"no such file: {path}")
    if source.suffix.lower() == ".txt":
        pieces, report = language.parse(source.read_text(errors="replace"))
        if not pieces:
            raise UserError(f"{path} holds no piece in the score language")
        if report.total:
            raise UserError(f"{path} is not valid score text: {report.repairs.most_common(1)[0][0]}")
        return [(source.stem if len(pieces) == 1 else f"{source.stem}#{n}", p) for n, p in enumerate(pieces, 1)]
    try:
        parsed = language.read_score(str(source))
    except Exception as error:
        raise UserError(f"cannot read {path}: {' '.join(str(error).split())[:150]}") from None
    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    out = []
    for number, score in enumerate(scores, 1):
        piece = language.piece_from_score(score)
        if piece.measures:
            out.append((source.stem if len(scores) == 1 else f"{source.stem}#{number}", piece))
    return out


def has_notes(piece: language.Piece) -> bool:
    return any(e.pitch is not None for m in piece.measures for v in m.voices for e in v)


def places_and_beats(piece: language.Piece, notes: list[information.NoteInformation]):
    """Per note: its place as notation.engraved_order keys it (voice, measure, n-th event there,
    k-th note of its chord), its measure number as printed (a pickup is measure 0) and its beat."""
    pickup = piece.measures[0].time is not None and \
        piece.measures[0].length < language.bar_length(piece.measures[0].time)
    times = []  # the time signature in force in each measure
    for measure in piece.measures:
        times.append(measure.time or times[-1])
    position: dict[tuple, int] = {}
    place = (0, 0, 0, 0)
    out = []
    for note in notes:
        if note.word.startswith("+"):  # a note under the chord's top one: the same event, the next note down
            place = (note.voice, note.measure, place[2], place[3] + 1)
        else:
            count = position.get((note.voice, note.measure), 0)
            position[(note.voice, note.measure)] = count + 1
            place = (note.voice, note.measure, count, 0)
        measure, time = piece.measures[note.measure], times[note.measure]
        offset = note.offset
        bar = language.bar_length(time)
        if note.measure == 0 and measure.length < bar:
            offset += bar - measure.length  # a pickup's notes sit at the end of a full bar
        beat = 1 + float(offset) * int(time.split("/")[1]) / 4
        out.append((place, note.measure if pickup else note.measure + 1, round(beat, 3)))
    return out


def _number(value, digits: int = 4):
    if value is None:
        return ""
    return "inf" if math.isinf(value) else round(value, digits) + 0.0  # + 0.0: no "-0.0"


def _probability(value):
    """Eight significant digits: a small probability keeps its information content exact."""
    return "" if value is None else float(f"{value:.8g}")


def note_rows(melody_id: int, name: str, piece: language.Piece, notes, model: str, held_out,
              distributions: bool) -> list[dict]:
    voices = language.part_names(piece.num_voices)
    rows = []
    for number, (note, (_, measure, beat)) in enumerate(zip(notes, places_and_beats(piece, notes)), 1):
        row = {"melody.id": melody_id, "melody.name": name, "note.id": number, "voice": voices[note.voice],
               "measure": measure, "beat": beat, "onset": float(note.onset), "dur": float(note.duration),
               "pitch": note.pitch or "rest", "cpitch": "" if note.cpitch is None else note.cpitch, "word": note.word,
               "continues.tie": note.continues_tie, "probability": _probability(note.probability),
               "information.content": _number(note.information_content), "entropy": _number(note.entropy),
               "cpitch.probability": _probability(note.pitch_probability),
               "cpitch.information.content": _number(note.pitch_information_content),
               "cpitch.entropy": _number(note.pitch_entropy),
               "cpitch.model": "" if note.cpitch is None else "model+short-term" if note.short_term else "model",
               "surprisal_bits": _number(note.surprisal_bits),
               "alphabet": note.alphabet, "model": model, "held.out": "" if held_out is None else held_out}
        if distributions and note.pitch_distribution:
            row.update({f"cpitch.{midi}": _probability(p) for midi, p in note.pitch_distribution.items()})
        rows.append(row)
    return rows


def piece_row(melody_id: int, name: str, notes, rows: list[dict], model: str, held_out) -> dict:
    summary = information.summarize(notes)
    top = sorted(rows, key=lambda r: -float(r["information.content"]))[:3]
    return {"melody.id": melody_id, "melody.name": name, "model": model, "held.out": "" if held_out is None else held_out,
            "notes": summary.notes, "events": summary.events,
            "mean.information.content": _number(summary.information_content),
            "mean.entropy": _number(summary.entropy),
            "mean.cpitch.information.content": _number(summary.pitch_information_content),
            "mean.cpitch.entropy": _number(summary.pitch_entropy),
            "most.surprising": "; ".join(f"{r['voice']} m{r['measure']} b{r['beat']:g} {r['pitch']} "
                                         f"{r['information.content']:.2f}" for r in top)}


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Written under a temporary name and renamed into place: whole or absent."""
    extra = sorted({key for row in rows for key in row} - set(columns),
                   key=lambda k: (not k.startswith("cpitch."), int(k.split(".")[1]) if k.split(".")[1].isdigit() else 0))
    with files.replacing(path) as temporary, open(temporary, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns + extra, restval="")
        writer.writeheader()
        writer.writerows(rows)


@dataclass
class AnalysisSettings:
    """What --surprisal was asked for."""
    source: str
    output: Path | None = None  # the stem's place (-o)
    overwrite: bool = False
    distributions: bool = False  # a cpitch.N column per pitch: the whole predicted distribution
    short_term: bool = False  # pitch measures combined with IDyOM's short-term model of each voice
    performance: render.Performance = render.Performance()
    device: str = "cpu"  # lm.pick_device's names


def analyse(model_folder, settings: AnalysisSettings) -> int:
    """infer.py --surprisal: analyse a score, or every piece of a file or folder."""
    source = Path(settings.source)
    if not source.exists():
        raise UserError(f"no such file: {settings.source}")
    models = Models.open(model_folder, settings.device)
    stem = settings.output.with_suffix("") if settings.output else (source if source.is_dir() else source.with_suffix(""))
    many_outputs = [stem.with_name(stem.name + s) for s in (".surprisal.csv", ".pieces.csv")]
    one_outputs = [stem.with_name(stem.name + s) for s in (".surprisal.csv", ".surprisal.png", ".surprisal.html")]
    # before the slow parse, what is known already: a folder writes the two tables, a file the CSV at least
    for path in many_outputs if source.is_dir() else one_outputs[:1]:
        check_can_write(path, settings.overwrite)
    pieces = read_pieces(settings.source)
    pieces = [(name, piece) for name, piece in pieces if has_notes(piece)]
    if not pieces:
        raise UserError(f"{settings.source} holds no notes to analyse")
    single = len(pieces) == 1 and not source.is_dir()
    for path in one_outputs if single else many_outputs:
        check_can_write(path, settings.overwrite)
    if models.voices() == 1 and any(p.num_voices > 1 for _, p in pieces):
        print("note: the model is a melody model: analysing the top voice of each piece", file=sys.stderr)
        pieces = [(name, dataset.melody_of(p) if p.num_voices > 1 else p) for name, p in pieces]
    alphabet = sorted({language.midi_number(e.pitch) for _, p in pieces for m in p.measures for v in m.voices
                       for e in v if e.pitch is not None})  # IDyOM's domain: the pitches of what is analysed
    rows, table, analysed = [], [], []
    from tqdm import tqdm
    for melody_id, (name, piece) in enumerate(tqdm(pieces, desc="analysing", unit="piece", file=sys.stderr,
                                                   disable=len(pieces) < 3), 1):
        names, held_out = models.for_piece(piece.to_text())
        if held_out is False:
            tqdm.write(f"note: no fold held out {name}: analysed by all {len(names)} fold models, "
                       f"each one's rows marked", file=sys.stderr)
        for model_name in names:
            model, tokenizer, _, vocabulary, predictor = models.load(model_name)
            notes = information.note_information(piece, tokenizer, predictor, vocabulary,
                                                 settings.distributions or settings.short_term)
            if settings.short_term:
                information.with_short_term(notes, alphabet)
            label = model_name or models.folder.name
            piece_rows = note_rows(melody_id, name, piece, notes, label, held_out, settings.distributions)
            rows.extend(piece_rows)
            table.append(piece_row(melody_id, name, notes, piece_rows, label, held_out))
            analysed.append((piece, notes, piece_rows, label, held_out))
    if single:
        return _single_report(analysed, one_outputs, settings)
    write_csv(many_outputs[0], rows, COLUMNS)
    write_csv(many_outputs[1], table, PIECE_COLUMNS)
    _print_table(table)
    print(f"wrote {many_outputs[0]} ({len(rows)} notes) and {many_outputs[1]} ({len(table)} pieces)")
    return 0


def _print_table(table: list[dict]) -> None:
    def mean(column):
        values = [float(r[column]) for r in table if r[column] != "" and not math.isnan(float(r[column]))]
        return sum(values) / len(values) if values else math.nan
    print(f"{len(table)} pieces: mean information content {mean('mean.information.content'):.3f} bits per event, "
          f"pitch {mean('mean.cpitch.information.content'):.3f} bits per note (means of the pieces' means)")
    for row in sorted(table, key=lambda r: -float(r["mean.information.content"]))[:5]:
        print(f"  {row['mean.information.content']:6.2f} bits  {row['melody.name']}  ({row['model']})")


def _single_report(analysed, outputs: list[Path], settings: AnalysisSettings) -> int:
    csv_path, png_path, html_path = outputs
    write_csv(csv_path, [row for _, _, rows, _, _ in analysed for row in rows], COLUMNS)
    piece, notes, rows, label, held_out = analysed[0]
    places = [place for place, _, _ in places_and_beats(piece, notes)]
    colours = dict(zip(places, (min(n.information_content, 30.0) for n in notes)))
    svgs = notation.svg_pages(notation.musicxml_bytes(notation.surprisal_score(piece, colours)))
    notation.write_png_pages(svgs, png_path)
    summary = information.summarize(notes)
    which = "" if held_out is None else f" (model {label}, which {'held it out' if held_out else 'saw it'})"
    print(f"{settings.source}: {summary.events} events, {summary.information_content:.2f} bits of information content "
          f"per event, entropy {summary.entropy:.2f}; pitch {summary.pitch_information_content:.2f} bits per note, "
          f"entropy {summary.pitch_entropy:.2f}{which}")
    print("most surprising:")
    surprising = sorted(rows, key=lambda r: -float(r["information.content"]))[:10]
    for row in surprising[:5]:
        print(f"  {row['information.content']:6.2f} bits  {row['voice']:8s} measure {row['measure']:3d} "
              f"beat {row['beat']:<5g} {row['pitch']} {row['word']}")
    _page(piece, svgs, rows, places, surprising, summary, html_path, settings)
    print(f"wrote {csv_path}, {png_path} and {html_path}")
    return 0


def _page(piece, svgs: list[str], rows, places, surprising, summary, html_path: Path,
          settings: AnalysisSettings) -> Path:
    """The page: the score with every note coloured by its information content, each with a
    tooltip (information content and entropy, of the event and of its pitch), a player, the
    piece's means and its most surprising moments."""
    from scorelm import page

    def pitch_part(row):
        return "" if row["cpitch.information.content"] == "" else \
            f"; pitch {float(row['cpitch.information.content']):.2f} bits, entropy {float(row['cpitch.entropy']):.2f}"
    labels = {place: f"{row['voice']}, measure {row['measure']}, beat {row['beat']:g}: {row['pitch']} "
                     f"{row['word'].split(':')[-1] if ':' in row['word'] else row['word']}{pitch_part(row)}; "
                     f"entropy {float(row['entropy']):.2f}, information content {float(row['information.content']):.2f} bits"
              for place, row in zip(places, rows)}
    _, encoded, seconds = settings.performance.sound(piece)
    moments = "".join(f"<li>{float(row['information.content']):.2f} bits: {page.esc(row['voice'])}, measure "
                      f"{row['measure']}, beat {row['beat']:g}, {page.esc(row['pitch'])}</li>" for row in surprising)
    notes = (f'<p><strong>{summary.information_content:.2f} bits of information content per event</strong> '
             f'(entropy {summary.entropy:.2f}) over {summary.events} notes and rests, a tied note once; pitch alone '
             f'{summary.pitch_information_content:.2f} bits per note (entropy {summary.pitch_entropy:.2f}). '
             f'Colour: dark blue expected, through green and yellow, to red surprising; hover or tap a note for '
             f'its measures.</p><details open><summary>The most surprising moments</summary><ol>{moments}</ol></details>')
    name = Path(settings.source).name
    shown = page.PagePiece(f"Information content of {name}", notation.labelled_svg_pages(svgs, piece, labels),
                           piece.to_text(), encoded, seconds, [], notes)
    return page.write_page(html_path, f"Information content of {name}", [shown], settings.performance.settings())
