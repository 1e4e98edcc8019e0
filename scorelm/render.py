"""What a run writes for people to read and hear: per piece MusicXML, MIDI (each voice on its own
channel and instrument, at the performance's tempo), sheet music (PNG), audio (MP3; WAV on
request), and one HTML page for the whole run (scorelm.page). Used by infer.py --render and
reconstruct.py."""
from __future__ import annotations

import multiprocessing
import sys
from dataclasses import dataclass
from pathlib import Path

from scorelm import audio, files, language, notation, page
from scorelm.cli import UserError, quiet_worker, worker_count

SUFFIXES = {"musicxml": ".musicxml", "midi": ".mid", "png": ".png", "mp3": ".mp3", "wav": ".wav"}
DEFAULT_FORMATS = ["musicxml", "midi", "png", "mp3"]  # what --render writes (WAV only when asked: --wav)


@dataclass(frozen=True)
class Performance:
    """How the pieces are played."""
    instrument: str = audio.DEFAULT_INSTRUMENT
    tempo: float = audio.DEFAULT_TEMPO
    fermata_hold: float = audio.FERMATA_HOLD

    def options(self) -> dict:
        """As keyword arguments of audio.render and audio.write_midi."""
        return {"instrument": self.instrument, "tempo": self.tempo, "fermata_hold": self.fermata_hold}

    def settings(self) -> dict:
        return {"instrument": self.instrument, "tempo": f"{self.tempo:g} quarter notes a minute",
                "fermatas held": f"{self.fermata_hold:g}x", "synthesiser": audio.synthesiser()}

    def sound(self, piece: language.Piece):
        """(samples, MP3 bytes, seconds) of the piece played so."""
        samples, _ = audio.render(piece, **self.options())
        return samples, audio.mp3_bytes(samples), len(samples) / audio.SAMPLE_RATE


def add_performance_arguments(parser) -> None:
    """How rendered pieces sound: the options infer.py and reconstruct.py share."""
    parser.add_argument("--instrument", choices=sorted(audio.INSTRUMENTS), default=audio.DEFAULT_INSTRUMENT,
                        help=f"General MIDI instrument of every voice (default {audio.DEFAULT_INSTRUMENT}; "
                             f"without a soundfont an organ plays)")
    parser.add_argument("--tempo", type=float, default=audio.DEFAULT_TEMPO,
                        help=f"quarter notes a minute (default {audio.DEFAULT_TEMPO})")
    parser.add_argument("--fermata-hold", type=float, default=audio.FERMATA_HOLD,
                        help=f"a note under a fermata lasts this many times its length "
                             f"(default {audio.FERMATA_HOLD:g}; 1: strict time)")
    parser.add_argument("--wav", action="store_true", help="also write WAV audio")


def performance_of(args) -> Performance:
    """The Performance the command line asks for (a one-line error for nonsense)."""
    from scorelm.cli import UserError
    if not 10 <= args.tempo <= 400 or not 1 <= args.fermata_hold <= 4:
        raise UserError("--tempo must be 10-400 quarter notes a minute and --fermata-hold 1-4")
    return Performance(instrument=args.instrument, tempo=args.tempo, fermata_hold=args.fermata_hold)


def page_path(stem: Path) -> Path:
    return stem.with_name(stem.name + ".html")


def planned_paths(stem: Path, count: int, formats: list[str], with_page: bool) -> list[Path]:
    """Every file render_pieces will write (the first page of each PNG), to refuse overwriting."""
    paths = [s.with_name(s.name + SUFFIXES[fmt]) for s in notation.piece_stems(stem, count) for fmt in formats]
    return paths + ([page_path(stem)] if with_page else [])


def render_pieces(pieces: list[language.Piece], stem: Path, formats: list[str], *, title: str,
                  performance: Performance = Performance(), with_page: bool = True, page_title: str | None = None,
                  settings: dict | None = None, repairs: list[list[str]] | None = None,
                  notes_html: list[str] | None = None, intro_html: str = "",
                  titles: list[str] | None = None, marks: list[tuple] | None = None,
                  quiet: bool = False) -> list[Path]:
    """Write each piece in `formats` (keys of SUFFIXES) under notation.piece_stems(stem), and the
    run's page at stem.html. Returns the paths written. Pieces are rendered one per core (each
    is independent: engraving, MIDI, synthesis and encoding), with a progress bar. `marks`: per
    piece, a passage to colour in its engraving and MusicXML, (first measure, end measure, parts
    or None), as notation.marked takes them (None: none). quiet: no progress bar."""
    from tqdm import tqdm
    stems = notation.piece_stems(stem, len(pieces))
    jobs = [(piece, piece_stem, formats, titles[index] if titles else title if len(pieces) == 1
             else f"{title} ({index + 1})", performance, with_page, (marks or [None] * len(pieces))[index])
            for index, (piece, piece_stem) in enumerate(zip(pieces, stems))]
    results = [None] * len(jobs)
    progress = tqdm(total=len(jobs), desc="rendering", unit="piece", file=sys.stderr, disable=quiet or len(jobs) < 2)
    workers = min(worker_count(None), len(jobs))
    try:
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            # fork: the workers start with everything imported (music21 alone takes a second to
            # import); leaving the block (an error, Ctrl-C, SIGTERM) terminates them
            with multiprocessing.get_context("fork").Pool(workers, initializer=quiet_worker) as pool:
                for index, result in pool.imap_unordered(_render_indexed, enumerate(jobs)):
                    results[index] = result
                    progress.update()
        else:
            for index, job in enumerate(jobs):
                results[index] = _render_one(*job)
                progress.update()
    except BaseException:
        # a stopped worker may leave a file half written under its temporary name: removed;
        # the pieces written whole stay, and no page is written
        files.remove_partial(planned_paths(stem, len(pieces), formats, with_page))
        raise
    finally:
        progress.close()
    written = [path for paths, _ in results for path in paths]
    if with_page:
        shown = []
        for index, (_, (svgs, text, encoded, seconds)) in enumerate(results):
            shown.append(page.PagePiece(jobs[index][3], svgs, text, encoded, seconds,
                                        (repairs or [[]] * len(pieces))[index],
                                        (notes_html or [""] * len(pieces))[index]))
        written.append(page.write_page(page_path(stem), page_title or title, shown,
                                       {**(settings or {}), **performance.settings()}, intro_html))
    return written


def _render_indexed(indexed_job: tuple[int, tuple]):
    index, job = indexed_job
    return index, _render_one(*job)


def _render_one(piece: language.Piece, piece_stem: Path, formats: list[str], piece_title: str,
                performance: Performance, with_page: bool, mark: tuple | None = None):
    """One piece's files, in the order of `formats`; and what its page section needs. A piece
    music21 cannot write (a bug of ours or of music21's, not the user's) is one line, naming it."""
    from music21.exceptions21 import Music21Exception
    try:
        return _render_files(piece, piece_stem, formats, piece_title, performance, with_page, mark)
    except Music21Exception as error:
        raise UserError(f"{piece_title}: music21 could not write it: {error}") from None


def _render_files(piece: language.Piece, piece_stem: Path, formats: list[str], piece_title: str,
                  performance: Performance, with_page: bool, mark: tuple | None = None):
    xml = notation.piece_musicxml(piece, title=piece_title, workers=worker_count(None))
    if mark is not None:
        xml = notation.marked(xml, *mark)
    path = {fmt: piece_stem.with_name(piece_stem.name + SUFFIXES[fmt]) for fmt in formats}
    svgs = notation.svg_pages(xml) if with_page or "png" in formats else []
    samples = encoded = seconds = None
    if with_page or "mp3" in formats or "wav" in formats:
        samples, encoded, seconds = performance.sound(piece)
    written = []
    for fmt in formats:
        if fmt == "musicxml":
            files.write_bytes(path[fmt], xml)
            written.append(path[fmt])
        elif fmt == "png":
            written += notation.write_png_pages(svgs, path[fmt])
        elif fmt == "midi":
            written.append(audio.write_midi(piece, path[fmt], **performance.options(), title=piece_title))
        elif fmt == "mp3":
            files.write_bytes(path[fmt], encoded)
            written.append(path[fmt])
        elif fmt == "wav":
            written.append(audio.write_wav(samples, path[fmt]))
    return written, ((svgs, piece.to_text(), encoded, seconds) if with_page else None)
