"""Turn ScoreLM text back into notation and sound: MusicXML, and optionally MIDI, sheet music
(PNG), audio (MP3, WAV) and one HTML page with every piece engraved beside a player.

    python reconstruct.py out.txt                # writes out.musicxml beside it
    python reconstruct.py out.txt --midi --png   # ... and out.mid, out.png
    python reconstruct.py out.txt --audio --page # ... and out.mp3, and out.html to open in a browser
    python infer.py "|" | python reconstruct.py - -o sample.musicxml

Model output is imperfect, so the text is repaired where the grammar does not allow it
(unknown tokens skipped, measures padded or cut, missing voices filled with rests, bad ties
dropped); every repair is listed on stderr. A text with several pieces gives one score each.
Exit codes: 0 written, 1 --strict and a repair was needed, 2 no usable input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scorelm import language, render
from scorelm.cli import UserError, check_can_write, run

XML_SUFFIXES = (".musicxml", ".xml")


def read_text(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    if not path.is_file():
        raise UserError(f"{source} is not a file" if path.exists() else f"no such file: {source}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{source} is not a UTF-8 text file") from None


def repairs_per_piece(text: str, count: int, report) -> list[list[str]]:
    """Each piece's own repairs, for the page: the text parsed piece by piece (cut after each
    '||'); if that does not give the same pieces, every piece is shown the whole text's repairs."""
    chunks = [chunk for chunk in text.replace(language.END, language.END + "\n\0").split("\0") if chunk.strip()]
    parsed = [language.parse(chunk) for chunk in chunks]
    if sum(len(pieces) for pieces, _ in parsed) != count:
        return [report.lines()] * count
    return [piece_report.lines() for pieces, piece_report in parsed for _ in pieces]


def output_stem(source: str, output: Path | None) -> Path:
    if output is not None:
        return output.with_suffix("") if output.suffix.lower() in XML_SUFFIXES else output
    return Path("reconstructed") if source == "-" else Path(source).with_suffix("")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("input", help="text file of ScoreLM text, or - for standard input")
    parser.add_argument("-o", "--output", type=Path,
                        help="MusicXML file to write (default: the input's name with .musicxml); "
                             "MIDI and PNG go beside it")
    parser.add_argument("--midi", action="store_true", help="also write a MIDI file")
    parser.add_argument("--png", action="store_true", help="also write sheet music as PNG")
    parser.add_argument("--audio", action="store_true", help="also write audio (MP3; --wav for WAV too)")
    parser.add_argument("--page", action="store_true",
                        help="also write one HTML page: every piece engraved, with a player and its text")
    render.add_performance_arguments(parser)
    parser.add_argument("--title", help="title printed on the score")
    parser.add_argument("--strict", action="store_true", help="fail (exit 1) instead of repairing")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    args = parser.parse_args(argv)
    performance = render.performance_of(args)

    text = read_text(args.input)
    pieces, report = language.parse(text)
    if not pieces:
        raise UserError(f"{args.input}: no music found (a piece starts with '|')")
    if report.total:
        print(f"repaired {report.total} problem(s) in {args.input}:", file=sys.stderr)
        print("\n".join(report.lines()), file=sys.stderr)
        if args.strict:
            raise UserError("--strict: the text needed repairs; nothing written", code=1)
    formats = ["musicxml"] + ["midi"] * args.midi + ["png"] * args.png + ["mp3"] * args.audio + ["wav"] * args.wav
    stem = output_stem(args.input, args.output)
    for path in render.planned_paths(stem, len(pieces), formats, args.page):
        check_can_write(path, args.overwrite)
    stem.parent.mkdir(parents=True, exist_ok=True)
    title = args.title or stem.name
    for path in render.render_pieces(pieces, stem, formats, title=title, performance=performance,
                                     with_page=args.page, settings={"text": args.input},
                                     repairs=repairs_per_piece(text, len(pieces), report) if args.page else None):
        print(path)
    return 0


if __name__ == "__main__":
    run(main)
