"""Turn ScoreLM text back into notation: MusicXML, and optionally MIDI and sheet music (PNG).

    python reconstruct.py out.txt                # writes out.musicxml beside it
    python reconstruct.py out.txt --midi --png   # ... and out.mid, out.png
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

from scorelm import language, notation
from scorelm.cli import UserError, run

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
    parser.add_argument("--title", help="title printed on the score")
    parser.add_argument("--strict", action="store_true", help="fail (exit 1) instead of repairing")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    args = parser.parse_args(argv)

    text = read_text(args.input)
    pieces, report = language.parse(text)
    if not pieces:
        raise UserError(f"{args.input}: no music found (a piece starts with '|')")
    if report.total:
        print(f"repaired {report.total} problem(s) in {args.input}:", file=sys.stderr)
        print("\n".join(report.lines()), file=sys.stderr)
        if args.strict:
            raise UserError("--strict: the text needed repairs; nothing written", code=1)
    formats = ["musicxml"] + ["midi"] * args.midi + ["png"] * args.png
    stem = output_stem(args.input, args.output)
    existing = [p for p in notation.planned_paths(stem, len(pieces), formats) if p.exists()]
    if existing and not args.overwrite:
        raise UserError(f"{existing[0]} exists; pass --overwrite to replace it")
    stem.parent.mkdir(parents=True, exist_ok=True)
    for path in notation.write_pieces(pieces, stem, formats, title=args.title or stem.name):
        print(path)
    return 0


if __name__ == "__main__":
    run(main)
