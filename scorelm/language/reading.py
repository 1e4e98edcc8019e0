"""A score file (or a music21 corpus path) -> music21 score, read as the file writes it.

Every place that reads a user's or the corpus's score goes through `read_score`, so that what
music21 misreads is mended once, here, for all of them."""
from __future__ import annotations

from pathlib import Path


def keep_written_rest_lengths() -> None:
    """Make music21's MusicXML reader keep a rest as long as its <duration> says.

    music21 (10.5 and before) calls a measure's rest a full-measure rest when the measure's
    parser counted one rest and no note, and then gives a whole or breve rest the time
    signature's bar length. It counts a chord as no note, so a whole rest beside chords in an
    over-long measure (L:6 in 3/4: a half-note chord and a whole rest, read back as a 3-quarter
    rest) or in a 3/2 bar (read back as 6) loses or gains beats: the rest of the part then comes
    late or early. MusicXML's <duration> is the rest's length, and a rest written
    ``measure="yes"`` keeps its `fullMeasure` flag from the reader's own note parser; only the
    re-length is dropped. music21's reader is a module-level class that its part parser
    instantiates by name, so the mend is a wrapper around `MeasureParser.parse`, installed once
    per process (idempotent)."""
    from music21.musicxml import xmlToM21
    parse = xmlToM21.MeasureParser.parse
    if getattr(parse, "keeps_written_rest_lengths", False):
        return

    def parse_keeping_rest_lengths(self):
        parse(self)
        self.fullMeasureRest = False

    parse_keeping_rest_lengths.keeps_written_rest_lengths = True
    xmlToM21.MeasureParser.parse = parse_keeping_rest_lengths


def read_score(source, **options):
    """The music21 score (or Opus) in `source`: a file, or else a path in music21's corpus
    ("bach/bwv66.6"). `options` go to music21's parser (forceSource, quantizePost, ...).
    Raises what music21 raises for a file it cannot read."""
    from music21 import converter, corpus
    keep_written_rest_lengths()
    if Path(source).exists():
        return converter.parse(source, **options)
    return corpus.parse(source, **options)
