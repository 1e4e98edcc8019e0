"""Passages written again, judged (the scorecard's infilling columns and bench/bench_infill.py):
for every chorale of a split long enough, a span of 2 to 4 measures in its middle is written
again by a model trained to infill (all voices, or some), and judged as a musician would judge
it: whether the piece is still valid and every note outside the span the chorale's own; the
voice leading of the span with a measure on either side (so that the joins count) beside the
same measures of Bach's; how much of the time each rewritten voice sounds Bach's own note; and
the bits per note of the span's real notes given both sides against given the music before it
alone (infilling.span_bits: whether the model uses what follows)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from scorelm import evaluation, infilling, language, lm, writing
from scorelm.cli import UserError
from scorelm.decoding import Progress, SamplingSettings

ROLES = ("soprano", "alto", "tenor", "bass")  # the voices of a four-voice chorale, top down


def middle_span(measures: int, place: int) -> tuple[int, int] | None:
    """Measures (0-based, end exclusive) of a 2- to 4-measure span in the middle of a piece (2, 3,
    4, 2, ... by its place in the split), with at least one measure on either side; None for a
    piece too short."""
    length = 2 + place % 3
    if measures < length + 2:
        return None
    first = (measures - length) // 2
    return first, first + length


@dataclass
class Judgement:
    """What passages written again in a split's chorales came to."""
    chorales: int = 0  # with a span (long enough, and short enough for the context)
    refused: int = 0  # a word outside the span the model lacks (as infer.py --infill refuses it)
    valid: int = 0  # valid without a repair, as many measures as the chorale
    kept: int = 0  # every word outside the span the chorale's own
    bits_both: float = 0.0  # the span's real notes' bits given both sides (summed)
    bits_alone: float = 0.0  # ... given the music before it alone
    notes: int = 0  # the spans' notes
    written: list[str] = field(default_factory=list)  # the pieces with their span written again
    originals: list[str] = field(default_factory=list)  # the chorales they were written in
    spans: list[tuple[int, int]] = field(default_factory=list)

    def columns(self, voices: tuple[int, ...] | None, reference=None) -> tuple[dict, dict]:
        """The written spans' and Bach's same spans' statistics, each with a measure on either side,
        and how often each rewritten voice sounds Bach's note within the span (percent of time)."""
        ours, bach = (evaluation.music_statistics(_around_spans(texts, self.spans), reference)
                      for texts in (self.written, self.originals))
        ours.update(evaluation.distribution_distances(ours, bach))
        bach.update(evaluation.distribution_distances(bach, bach))
        rewritten = voices or tuple(range(1, len(ROLES) + 1))
        roles = {ROLES[number - 1]: evaluation.voice_role(number - 1, len(ROLES)) for number in rewritten
                 if number <= len(ROLES)}
        ours.update(evaluation.agreement(_spans(self.written, self.spans), _spans(self.originals, self.spans), roles))
        attempted = max(self.chorales - self.refused, 1)
        ours.update({"valid_pieces_percent": 100 * self.valid / attempted,
                     "kept_outside_percent": 100 * self.kept / attempted})
        if self.notes:
            ours.update({"span_bits_both_sides": self.bits_both / self.notes,
                         "span_bits_before_alone": self.bits_alone / self.notes})
        for column in (ours, bach):
            column.pop("valid_measures_percent", None)  # an excerpt's ties out of it are no repairs of the piece's
        return ours, bach


def judge(loaded: writing.LoadedModel, texts: list[str], settings: SamplingSettings, *,
          voices: tuple[int, ...] | None = None, bits: bool = True, seed: int = 0, quiet: bool = False) -> Judgement:
    """A span of 2 to 4 measures in the middle of each chorale written again (`voices`: those voice
    numbers only; None: all), one sample each, seed `seed` + its place; with `bits`, the span's
    notes scored both ways. Chorales too short, or too long for the context with a passage, are
    left out; those with a word outside the span the model lacks are refused (said on stderr)."""
    from tqdm import tqdm
    result = Judgement()
    what = "infilling " + ("all voices" if voices is None else ",".join(ROLES[n - 1] for n in voices))
    for place, text in enumerate(tqdm(texts, desc=what, unit="piece", file=sys.stderr, disable=quiet,
                                      dynamic_ncols=True)):
        piece = language.parse(text)[0][0]
        span = middle_span(len(piece.measures), place)
        # the rearranged piece (three sentinels more) must fit the context with room for the passage
        if span is None or len(lm.piece_ids(loaded.tokenizer, text)) + 3 > loaded.context:
            continue
        result.chorales += 1
        if bits:
            bits_both, bits_alone, span_notes = infilling.span_bits(loaded.model, loaded.tokenizer, text, *span)
            result.bits_both += bits_both
            result.bits_alone += bits_alone
            result.notes += span_notes
        numbers = infilling.measure_numbers(piece)
        try:
            written = writing.infill(loaded, piece, numbers[span[0]], numbers[span[1] - 1], settings, seed=seed + place,
                                     voices=voices, progress=Progress("infilling", True))[0]
        except UserError as error:
            if not quiet:
                tqdm.write(f"note: chorale {place + 1} not infilled: {error}", file=sys.stderr)
            result.refused += 1
            continue
        original = piece.to_text()
        before, _, after = infilling.split_at_measures(original, *span)
        pieces, report = language.parse(written)
        result.valid += report.total == 0 and len(pieces) == 1 and len(pieces[0].measures) == len(piece.measures)
        result.kept += written.startswith(before) and written.endswith(after)
        result.written.append(written)
        result.originals.append(original)
        result.spans.append(span)
    return result


def _around_spans(texts: list[str], spans: list[tuple[int, int]]) -> list[str]:
    """Each piece's span with a measure on either side (where there is one), as a piece's text."""
    out = []
    for text, (first, end) in zip(texts, spans):
        piece = language.parse(text)[0][0]
        out.append(piece.excerpt(max(first - 1, 0), min(end + 1, len(piece.measures))).to_text())
    return out


def _spans(texts: list[str], spans: list[tuple[int, int]]) -> list[str]:
    """Each piece's span alone, as a piece's text."""
    return [language.parse(text)[0][0].excerpt(first, end).to_text() for text, (first, end) in zip(texts, spans)]
