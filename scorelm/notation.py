"""Writing music21 scores as MusicXML, MIDI and engraved sheet music (verovio, then cairosvg)."""
from __future__ import annotations

from pathlib import Path

FORMATS = {"musicxml": ".musicxml", "midi": ".mid", "png": ".png"}
PAGE_WIDTH = 2100  # verovio units (tenths of a staff space at scale 100); about A4 at 40%
PAGE_HEIGHT_LIMIT = 60000  # verovio's largest page: one tall page instead of many


def musicxml_bytes(score) -> bytes:
    from music21.musicxml.m21ToXml import GeneralObjectExporter
    return GeneralObjectExporter(score).parse()


def write_musicxml(score, path: Path) -> list[Path]:
    path.write_bytes(musicxml_bytes(score))
    return [path]


def write_midi(score, path: Path) -> list[Path]:
    score.write("midi", fp=str(path))
    return [path]


def svg_pages(musicxml: bytes, scale: int = 40) -> list[str]:
    """Engrave MusicXML with verovio; one SVG per page."""
    import verovio
    toolkit = verovio.toolkit()
    toolkit.setOptions({"pageWidth": PAGE_WIDTH, "pageHeight": PAGE_HEIGHT_LIMIT,
                        "adjustPageHeight": True, "scale": scale, "footer": "none"})
    if not toolkit.loadData(musicxml.decode("utf-8")):
        raise RuntimeError("verovio could not read the MusicXML")
    return [toolkit.renderToSVG(page) for page in range(1, toolkit.getPageCount() + 1)]


def write_png(score, path: Path) -> list[Path]:
    """Sheet music as PNG: path, then path-2.png, ... if the engraving needs several pages."""
    import cairosvg
    written = []
    for number, svg in enumerate(svg_pages(musicxml_bytes(score)), 1):
        page_path = path if number == 1 else path.with_name(f"{path.stem}-{number}{path.suffix}")
        cairosvg.svg2png(bytestring=svg.encode("utf-8"), write_to=str(page_path), background_color="white")
        written.append(page_path)
    return written


WRITERS = {"musicxml": write_musicxml, "midi": write_midi, "png": write_png}


def write_score(score, stem: Path, formats: list[str]) -> list[Path]:
    """Write `score` as stem.musicxml / stem.mid / stem.png for each of `formats`."""
    written = []
    for fmt in formats:
        written += WRITERS[fmt](score, stem.with_name(stem.name + FORMATS[fmt]))
    return written


def piece_stems(stem: Path, count: int) -> list[Path]:
    """One output stem per piece: out, or out-1, out-2, ... when there are several."""
    if count == 1:
        return [stem]
    return [stem.with_name(f"{stem.name}-{number}") for number in range(1, count + 1)]


def planned_paths(stem: Path, count: int, formats: list[str]) -> list[Path]:
    return [s.with_name(s.name + FORMATS[fmt]) for s in piece_stems(stem, count) for fmt in formats]


def write_pieces(pieces, stem: Path, formats: list[str], title: str | None = None) -> list[Path]:
    """Reconstruct each piece as a music21 Score and write it in each format."""
    from scorelm.language import score_from_piece
    written = []
    stems = piece_stems(stem, len(pieces))
    for number, (piece, piece_stem) in enumerate(zip(pieces, stems), 1):
        piece_title = title if len(pieces) == 1 or not title else f"{title} ({number})"
        written += write_score(score_from_piece(piece, title=piece_title), piece_stem, formats)
    return written


def write_surprisal_png(piece, bits: dict[tuple[int, int, int], float], path: Path) -> list[Path]:
    """The piece engraved with each note and rest coloured by its surprisal: dark blue for
    expected, through green and yellow, to red for the most surprising. `bits` is keyed by
    (voice, measure index, n-th event of that voice in that measure)."""
    import matplotlib
    from matplotlib import colormaps
    from music21 import stream
    from scorelm.language import score_from_piece
    score = score_from_piece(piece, title="surprisal (blue: expected, red: surprising)")
    low, high = min(bits.values()), max(bits.values())
    span = max(high - low, 1e-9)
    colours = colormaps["turbo"]
    for voice, part in enumerate(score.parts):
        for index, measure in enumerate(part.getElementsByClass(stream.Measure)):
            for n, element in enumerate(measure.notesAndRests):
                element.style.color = matplotlib.colors.to_hex(colours(0.1 + 0.85 * (bits[(voice, index, n)] - low) / span))
    return write_png(score, path)
