"""One self-contained HTML page per run: for each piece the engraved score (verovio SVG, every
page), a player, the score text, the repairs and the settings; for surprisal, the notes coloured
by their bits with a tooltip each; for the scorecard, its table and plots. Nothing is fetched at
viewing time (inline SVG, audio and images as data: URLs, and a Content-Security-Policy that
forbids anything else); light or dark as the reader's system prefers; readable on a phone.

Why HTML by hand rather than a template engine: the page is a dozen fixed blocks, each escaped
with html.escape; a dependency would not make it shorter.
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from scorelm import files

STYLE = """
:root { color-scheme: light dark; --ink: #1d1d1f; --paper: #fafafa; --card: #ffffff; --muted: #5f6368;
        --line: #d9d9de; --accent: #3b5bdb; }
@media (prefers-color-scheme: dark) {
  :root { --ink: #e8e8ea; --paper: #17181b; --card: #222327; --muted: #a0a3a8; --line: #3a3b40; --accent: #8da2ff; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       background: var(--paper); color: var(--ink); }
header, main { max-width: 980px; margin: 0 auto; padding: 0 16px; }
header { padding-top: 20px; }
h1 { font-size: 1.5rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 0 0 8px; }
.muted { color: var(--muted); font-size: 0.9rem; }
section.piece, section.block { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
                               padding: 14px; margin: 16px 0; }
/* the engraving stays black on white paper in both schemes, as printed music does */
.score { background: #fff; border-radius: 6px; padding: 6px; overflow-x: auto; }
.score svg { display: block; width: 100%; height: auto; }
/* on a phone the staves would shrink past reading: keep them legible and scroll the score sideways */
@media (max-width: 640px) { .score svg { width: 640px; max-width: none; } }
audio { width: 100%; margin: 10px 0 4px; }
pre { white-space: pre-wrap; word-break: break-word; font-size: 0.8rem; background: var(--paper);
      border: 1px solid var(--line); border-radius: 6px; padding: 8px; max-height: 18em; overflow: auto; }
table { border-collapse: collapse; font-size: 0.9rem; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.table-wrap { overflow-x: auto; }
img { max-width: 100%; height: auto; background: #fff; border-radius: 6px; }
details { margin: 6px 0; }
summary { cursor: pointer; color: var(--accent); }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 8px 0; font-size: 0.9rem; }
dl.settings dt { color: var(--muted); }
dl.settings dd { margin: 0; }
"""
# nothing may be fetched: inline styles, data: images and media only
POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; media-src data:"


@dataclass
class PagePiece:
    """One piece as the page shows it."""
    title: str
    svg_pages: list[str]
    text: str
    audio_mp3: bytes | None = None
    seconds: float | None = None  # the audio's length
    repairs: list[str] = field(default_factory=list)
    notes_html: str = ""  # more, already HTML (a melody's source, surprising moments)


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def responsive_svg(svg: str) -> str:
    """Verovio's SVG has a fixed size in px; give it a viewBox instead so that it scales to
    the page's width (a phone's included)."""
    match = re.match(r'\s*<svg([^>]*?)\swidth="([\d.]+)px"\s+height="([\d.]+)px"', svg)
    if not match:
        return svg
    width, height = match.group(2), match.group(3)
    head = f'<svg{match.group(1)} viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet" role="img"'
    return head + svg[match.end():]


def data_url(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def settings_html(settings: dict) -> str:
    rows = "".join(f"<dt>{esc(key)}</dt><dd>{esc(value)}</dd>" for key, value in settings.items()
                   if value not in (None, "", [], ()))
    return f'<dl class="settings">{rows}</dl>'


def piece_html(index: int, piece: PagePiece) -> str:
    scores = "".join(f'<div class="score" data-page="{number}">{responsive_svg(svg)}</div>'
                     for number, svg in enumerate(piece.svg_pages, 1))
    player = ""
    if piece.audio_mp3 is not None:
        length = f' data-seconds="{piece.seconds:.3f}"' if piece.seconds is not None else ""
        player = f'<audio controls preload="metadata"{length} src="{data_url(piece.audio_mp3, "audio/mpeg")}"></audio>'
    repairs = ("<p class=\"muted\">No repairs: the text was valid as written.</p>" if not piece.repairs else
               f"<details open><summary>{len(piece.repairs)} repair(s)</summary><pre>"
               + esc("\n".join(piece.repairs)) + "</pre></details>")
    return (f'<section class="piece" id="piece-{index}"><h2>{esc(piece.title)}</h2>{piece.notes_html}{scores}{player}'
            f'{repairs}<details><summary>Score text</summary><pre>{esc(piece.text)}</pre></details></section>')


def page_html(title: str, pieces: list[PagePiece], settings: dict | None = None, intro_html: str = "") -> str:
    blocks = "".join(piece_html(index, piece) for index, piece in enumerate(pieces, 1))
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{POLICY}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta name=\"color-scheme\" content=\"light dark\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{esc(title)}</h1>{settings_html(settings or {})}</header>"
            f"<main>{intro_html}{blocks}</main></body></html>\n")


def write_page(path: Path, title: str, pieces: list[PagePiece], settings: dict | None = None,
               intro_html: str = "") -> Path:
    return files.write_text(path, page_html(title, pieces, settings, intro_html))


def table_html(columns: dict[str, dict], rows: list[tuple[str, str]]) -> str:
    """A scorecard: one row per (label, key) with a value in some column, a column per name."""
    names = list(columns)
    head = "<tr><th></th>" + "".join(f"<th>{esc(name)}</th>" for name in names) + "</tr>"
    body = ""
    for label, key in rows:
        if not any(key in columns[name] for name in names):
            continue
        cells = "".join(f"<td>{columns[name][key]:.3f}</td>" if isinstance(columns[name].get(key), (int, float))
                        else "<td>-</td>" for name in names)
        body += f"<tr><td>{esc(label)}</td>{cells}</tr>"
    return f'<div class="table-wrap"><table class="scorecard">{head}{body}</table></div>'


def image_html(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="{data_url(png, "image/png")}">'
