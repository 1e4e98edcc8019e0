"""Writing music21 scores as MusicXML and engraved sheet music (verovio SVG, then PNG by cairosvg)."""
from __future__ import annotations

import html
import re
from pathlib import Path

PAGE_WIDTH = 2100  # verovio units (tenths of a staff space at scale 100); about A4 at 40%
PAGE_HEIGHT_LIMIT = 60000  # verovio's largest page: one tall page instead of many


def musicxml_bytes(score) -> bytes:
    """MusicXML of a score. music21's exporter first re-notates the score (beams, accidentals,
    ties at bar lines); on a measure longer than its time signature (an 'L:16' under 'T:1/8')
    that step can fail (StreamException: a measure added twice). The score from
    language.score_from_piece is already in measures with its ties, so it is then written as it
    is, without beams: the notes and their order are the same (the round trip is exact)."""
    from music21.exceptions21 import StreamException
    from music21.musicxml.m21ToXml import GeneralObjectExporter
    try:
        return GeneralObjectExporter(score).parse()
    except StreamException:
        exporter = GeneralObjectExporter(score)
        exporter.makeNotation = False
        return exporter.parse()


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
    return write_png_pages(svg_pages(musicxml_bytes(score)), path)


def write_png_pages(svgs: list[str], path: Path) -> list[Path]:
    """Engraved pages (SVG) as PNG files: path, path-2.png, ..."""
    import cairosvg
    written = []
    for number, svg in enumerate(svgs, 1):
        page_path = path if number == 1 else path.with_name(f"{path.stem}-{number}{path.suffix}")
        cairosvg.svg2png(bytestring=svg.encode("utf-8"), write_to=str(page_path), background_color="white")
        written.append(page_path)
    return written


def piece_stems(stem: Path, count: int) -> list[Path]:
    """One output stem per piece: out, or out-1, out-2, ... when there are several."""
    if count == 1:
        return [stem]
    return [stem.with_name(f"{stem.name}-{number}") for number in range(1, count + 1)]


def surprisal_score(piece, bits: dict[tuple[int, int, int], float]):
    """The piece as a music21 Score with each note and rest coloured by its surprisal: dark blue
    for expected, through green and yellow, to red for the most surprising. `bits` is keyed by
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
    return score


def label_events(svg: str, first_measure: int, labels: dict[tuple[int, int, int], str]) -> tuple[str, int]:
    """Give each engraved note and rest of one verovio page a tooltip (an SVG <title>) and a
    data-label: `labels` keyed as surprisal_score's bits. Verovio writes a page's measures in
    order, each with one staff per voice, each staff's notes and rests in time order, so the n-th
    note-or-rest of staff v in the page's m-th measure is (v, first_measure + m, n). Returns the
    SVG and the number of measures on the page."""
    import xml.etree.ElementTree as ET
    svg_ns = "{http://www.w3.org/2000/svg}"
    root = ET.fromstring(svg)

    def classes(element):
        return set((element.get("class") or "").split())

    titles = {}
    measures = [g for g in root.iter(svg_ns + "g") if "measure" in classes(g)]
    for m, measure in enumerate(measures):
        staves = [g for g in measure if "staff" in classes(g)]
        for voice, staff in enumerate(staves):
            events = [g for g in staff.iter(svg_ns + "g") if classes(g) & {"note", "rest"}]
            for n, event in enumerate(events):
                label = labels.get((voice, first_measure + m, n))
                if label is not None and event.get("id"):
                    titles[event.get("id")] = label

    def add_title(match):
        label = titles.get(match.group(1))
        if label is None:
            return match.group(0)
        return f'{match.group(0)[:-1]} data-label="{html.escape(label)}"><title>{html.escape(label)}</title>'

    return re.sub(r'<g id="([^"]+)" class="(?:note|rest)[^"]*"[^>]*>', add_title, svg), len(measures)


def labelled_svg_pages(svgs: list[str], labels: dict[tuple[int, int, int], str]) -> list[str]:
    """Engraved pages (svg_pages) with label_events' tooltips on every note and rest."""
    pages, first = [], 0
    for svg in svgs:
        svg, count = label_events(svg, first, labels)
        pages.append(svg)
        first += count
    return pages
