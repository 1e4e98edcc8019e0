"""Writing music21 scores as MusicXML and engraved sheet music (verovio SVG, then PNG by cairosvg)."""
from __future__ import annotations

import contextlib
import gc
import html
import re
from pathlib import Path

from scorelm import files
from scorelm.cli import fork_map

PAGE_WIDTH = 2100  # verovio units (tenths of a staff space at scale 100); about A4 at 40%
PAGE_HEIGHT_LIMIT = 60000  # verovio's largest page: one tall page instead of many


def musicxml_bytes(score, in_place: bool = False) -> bytes:
    """MusicXML of a score from language.score_from_piece. The score is already in measures with
    its voices and ties, so music21's re-notation (makeNotation) is left out: it moves what
    overflows a measure longer than its time signature into the next measure after that
    measure's own notes (the notes come out of order), and fails on a voice absent from the next
    measure. What the page needs is done here instead: a duration no single note value writes (5
    quarters) split into tied notes, accidentals, beams, tuplet brackets. Works on a copy, or,
    with `in_place`, on the score itself (a score made to be written once: a fifth of the time).
    Python's cycle collector is paused meanwhile: music21's objects are many and long-lived, and
    its passes over them made writing worse than linear in the piece's length."""
    import copy
    with cycle_collection_paused():
        return _musicxml(score if in_place else copy.deepcopy(score))


SPAN_MEASURES = 500  # a longer piece is written in spans of at most this many measures (piece_musicxml)


def piece_musicxml(piece, title: str | None = None, workers: int = 1, span_measures: int = SPAN_MEASURES) -> bytes:
    """MusicXML of a piece (language.Piece), the same bytes as musicxml_bytes of its whole score
    but for the parts' random ids. A piece longer than `span_measures` is written in spans of
    measures, on up to `workers` processes: each span built and written on its own, together
    with the measure before it as the context music21 reads for accidentals and beams (that
    measure then dropped), the spans' measures then joined into the first span's document.
    Memory stays that of one span, and a long piece is written on every core."""
    from scorelm.language import score_from_piece
    count = len(piece.measures)
    if count <= span_measures:
        with cycle_collection_paused():
            score = score_from_piece(piece, title=title)
        return musicxml_bytes(score, in_place=True)
    spans = [(first, min(first + span_measures, count)) for first in range(0, count, span_measures)]
    global _SPANNED
    _SPANNED = (piece, title)  # read by the workers, forked with it
    try:
        written = fork_map(_span_musicxml, spans, workers)
    finally:
        _SPANNED = None
    return _joined(written)


_SPANNED = None
_PART = re.compile(r'<part id="[^"]*">(.*?)</part>', re.S)


def _span_musicxml(span: tuple[int, int]) -> str:
    from scorelm.language import score_from_piece
    piece, title = _SPANNED
    first, end = span
    with cycle_collection_paused():
        score = score_from_piece(piece, title=title, span=(max(first - 1, 0), end))
    return musicxml_bytes(score, in_place=True).decode("utf-8")


def _joined(documents: list[str]) -> bytes:
    """The first span's document with every later span's measures (after its context measure)
    appended to each part, in order."""
    head = documents[0]
    additions = [[] for _ in _PART.finditer(head)]
    for document in documents[1:]:
        bodies = [match.group(1) for match in _PART.finditer(document)]
        if len(bodies) != len(additions):
            raise ValueError("the spans of a piece were written with different parts")
        for part, body in enumerate(bodies):
            context_end = body.find("</measure>") + len("</measure>")  # the context measure's
            additions[part].append(body[context_end:].rstrip())
    pieces, at = [], 0
    for part, match in enumerate(_PART.finditer(head)):
        last = head.rfind("</measure>", match.start(1), match.end(1)) + len("</measure>")
        pieces += [head[at:last], *additions[part]]
        at = last
    pieces.append(head[at:])
    return "".join(pieces).encode("utf-8")


@contextlib.contextmanager
def cycle_collection_paused():
    """gc.disable() for a block (reference counting still frees what it can), as it was after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _musicxml(score) -> bytes:
    from music21 import meter, stream
    from music21.exceptions21 import StreamException
    from music21.musicxml.m21ToXml import GeneralObjectExporter
    from music21.stream import makeNotation
    score.splitAtDurations(recurse=True)
    for part in score.parts:
        makeNotation.makeAccidentalsInMeasureStream(part)
        in_force = None
        for measure in part.getElementsByClass(stream.Measure):
            in_force = measure.timeSignature or in_force
            if in_force is not None:
                try:
                    _beam(measure, in_force)
                except (meter.MeterException, StreamException):
                    pass  # no beam grouping fits (a measure longer than its time signature): unbeamed
            makeNotation.makeTupletBrackets(measure, inPlace=True)
    exporter = GeneralObjectExporter(score)
    exporter.makeNotation = False
    return exporter.parse()


def _beam(measure, time_signature) -> None:
    """Beams for one measure's voices by the time signature in force, set as music21's makeBeams
    sets them (TimeSignature.getBeams does the grouping), stems left to the engraver. Written
    out because makeBeams looks the time signature up through the part from each measure and
    sets stem directions through the part's context: together worse than linear in the piece's
    length (a 2,000-measure text took 19 s to write, 20,000 measures 15 minutes)."""
    from music21 import beam
    from music21.common.numberTools import opFrac
    bar = time_signature.barDuration.quarterLength
    groups = [voice.notesAndRests.stream() for voice in measure.voices] if measure.hasVoices() \
        else [measure.notesAndRests.stream()]
    for notes in groups:
        if len(notes) <= 1:
            continue  # nothing to beam
        for grace in [n for n in notes if n.duration.isGrace]:
            notes.remove(grace)
        total = opFrac(opFrac(sum(n.duration.quarterLength for n in notes)))
        if total > bar:
            continue
        offset = 0.0
        if measure.paddingLeft != 0.0:
            offset = opFrac(measure.paddingLeft)
        elif measure.paddingRight == 0.0 and notes.highestTime < bar:
            offset = bar - notes.highestTime  # a measure short of its time signature: a pickup
        for note, beams in zip(notes, time_signature.getBeams(notes, measureStartOffset=offset)):
            note.beams = beams if beams is not None else beam.Beams()


MARK_COLOUR = "#B03A2E"  # a passage written again (infer.py --infill): its notes in red


def marked(musicxml: bytes, first: int, end: int, parts: set[int] | None = None, colour: str = MARK_COLOUR) -> bytes:
    """MusicXML with the notes of measures first to end - 1 (0-based, counted in each part) of
    `parts` (0-based; None: every part) coloured: what notation programs and verovio show in
    that colour. On piece_musicxml's own output, which writes each <note> without a colour."""
    import re
    text = musicxml.decode("utf-8")
    out, position = [], 0
    for part_index, part in enumerate(re.finditer(r"<part\b.*?</part>", text, flags=re.S)):
        out.append(text[position:part.start()])
        position = part.end()
        if parts is not None and part_index not in parts:
            out.append(part.group())
            continue
        measures = list(re.finditer(r"<measure\b.*?</measure>", part.group(), flags=re.S))
        inner, at = [], 0
        for index, measure in enumerate(measures):
            inner.append(part.group()[at:measure.start()])
            at = measure.end()
            body = measure.group()
            inner.append(re.sub(r"<note(?=[\s>])", f'<note color="{colour}"', body) if first <= index < end else body)
        out.append("".join(inner) + part.group()[at:])
    out.append(text[position:])
    return "".join(out).encode("utf-8")


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
        with files.replacing(page_path) as temporary:
            cairosvg.svg2png(bytestring=svg.encode("utf-8"), write_to=str(temporary), background_color="white")
        written.append(page_path)
    return written


def piece_stems(stem: Path, count: int) -> list[Path]:
    """One output stem per piece: out, or out-1, out-2, ... when there are several."""
    if count == 1:
        return [stem]
    return [stem.with_name(f"{stem.name}-{number}") for number in range(1, count + 1)]


def engraved_order(piece) -> dict[tuple[int, int], list[tuple[int, int, int, int]]]:
    """Where each note and rest of the piece stands in its engraving: for each (staff, measure
    index), the places (voice, measure index, n-th event of the voice in the measure, k) of its
    notes and rests in the order music21 writes them and verovio draws them: the staff's voices
    in turn, each voice's events in time, a chord's notes from the bottom up (k: 0 for the
    chord's top note, 1.. for the notes under it, highest first, as in the text)."""
    order = {}
    for staff, voices in enumerate(piece.staves):
        for index, measure in enumerate(piece.measures):
            places = []
            for voice in voices:
                for n, event in enumerate(measure.voices[voice]):
                    places.extend((voice, index, n, k) for k in range(len(event.chord), -1, -1))
            order[(staff, index)] = places
    return order


def _engraved_elements(score) -> dict[tuple[int, int], list]:
    """The music21 notes and rests of a score from language.score_from_piece, per (staff, measure
    index), in engraved_order's order."""
    from music21 import chord, stream
    out = {}
    for staff, part in enumerate(score.parts):
        for index, measure in enumerate(part.getElementsByClass(stream.Measure)):
            containers = list(measure.voices) or [measure]
            elements = []
            for container in containers:
                for element in container.notesAndRests:
                    elements.extend(element.notes if isinstance(element, chord.Chord) else [element])
            out[(staff, index)] = elements
    return out


def surprisal_score(piece, bits: dict[tuple[int, int, int, int], float]):
    """The piece as a music21 Score with each note and rest coloured by its surprisal: dark blue
    for expected, through green and yellow, to red for the most surprising; a chord's notes each
    their own. `bits` is keyed as engraved_order's places."""
    import matplotlib
    from matplotlib import colormaps
    from scorelm.language import score_from_piece
    score = score_from_piece(piece, title="surprisal (blue: expected, red: surprising)")
    low, high = min(bits.values()), max(bits.values())
    span = max(high - low, 1e-9)
    colours = colormaps["turbo"]
    elements = _engraved_elements(score)
    for where, places in engraved_order(piece).items():
        for place, element in zip(places, elements.get(where, [])):
            if place in bits:
                element.style.color = matplotlib.colors.to_hex(colours(0.1 + 0.85 * (bits[place] - low) / span))
    return score


def label_events(svg: str, first_measure: int, labels: dict[tuple, str], order: dict) -> tuple[str, int]:
    """Give each engraved note and rest of one verovio page a tooltip (an SVG <title>) and a
    data-label: `labels` keyed as engraved_order's places, `order` its result. Verovio writes a
    page's measures in order, each with its staves, each staff's notes and rests in the order
    music21 wrote them (engraved_order). Returns the SVG and the number of measures on the page."""
    import xml.etree.ElementTree as ET
    svg_ns = "{http://www.w3.org/2000/svg}"
    root = ET.fromstring(svg)

    def classes(element):
        return set((element.get("class") or "").split())

    titles = {}
    measures = [g for g in root.iter(svg_ns + "g") if "measure" in classes(g)]
    for m, measure in enumerate(measures):
        staves = [g for g in measure if "staff" in classes(g)]
        for staff_number, staff in enumerate(staves):
            events = [g for g in staff.iter(svg_ns + "g") if classes(g) & {"note", "rest"}]
            for place, event in zip(order.get((staff_number, first_measure + m), []), events):
                label = labels.get(place)
                if label is not None and event.get("id"):
                    titles[event.get("id")] = label
    def add_title(match):
        label = titles.get(match.group(1))
        if label is None:
            return match.group(0)
        return f'{match.group(0)[:-1]} data-label="{html.escape(label)}"><title>{html.escape(label)}</title>'

    return re.sub(r'<g id="([^"]+)" class="(?:note|rest)[^"]*"[^>]*>', add_title, svg), len(measures)


def labelled_svg_pages(svgs: list[str], piece, labels: dict[tuple, str]) -> list[str]:
    """Engraved pages (svg_pages) of the piece with label_events' tooltips on every note and rest."""
    pages, first = [], 0
    order = engraved_order(piece)
    for svg in svgs:
        svg, count = label_events(svg, first, labels, order)
        pages.append(svg)
        first += count
    return pages
