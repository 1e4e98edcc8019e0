"""The score text language: tokens, grammar, encoder (music21 -> text) and decoder (text -> music21).

Everything ScoreLM knows about its text format lives in this module.

A piece is a sequence of whitespace-separated tokens::

    | K:-1 T:4/4 L:1 V1 A4:1 V2 F4:1 V3 C4:1 V4 F3:1 | V1 A4:1 G4:1 F4:1 G4:1~ V2 ...  ||

=============  ===============  ==============================================================
token          example          meaning
=============  ===============  ==============================================================
``|``          ``|``            begins a measure (so ``|`` alone is the prompt for a new piece)
``||``         ``||``           ends the piece (a final barline)
``K:<n>``      ``K:-2``         key signature, ``n`` sharps (negative = flats), -7..7
``T:<n>/<d>``  ``T:3/4``        time signature
``L:<dur>``    ``L:1``          this measure's length, only when it differs from the time
                                signature's (pickup, short final measure)
``V<k>``       ``V2``           the k-th voice's notes of this measure follow (1 = top voice)
note           ``C#4:1.5^~``    spelled pitch with octave, ``:``, duration in quarter notes;
                                ``^`` fermata, ``~`` tied to the voice's next note
rest           ``R:0.5^``       rest, ``:``, duration; ``^`` fermata
=============  ===============  ==============================================================

Pitches are spelled (``C#4`` and ``Db4`` differ), flats written ``b``: ``Bb3``, ``Ebb5``.
Durations are quarter-note lengths: binary values as decimals (``0.125`` = 32nd, ``1.5`` =
dotted quarter), tuplet values as fractions (``1/3`` = triplet eighth).

The header -- the attribute tokens right after a measure's ``|`` -- comes in the order
K, T, L. The first measure must state K and T; later measures state them only when they change.
Inside a measure come the voices V1..Vn in order, and each voice's durations add up to exactly
the measure's length. Every measure of a piece has the same n voices (set by the first one).
A ``~`` note must be followed in its voice by a note of the same spelled pitch. ``||`` may only
close a complete measure with no tie left open.

The grammar is the ``FOLLOWS`` table plus the arithmetic of ``Grammar.violation``; the parser
(which repairs imperfect model output), the validator and the constrained decoder all use it.

What the encoder keeps of a music21 score: key and time signatures, measure lengths, and per
voice the spelled pitch or rest, duration, tie and fermata of every event. What it drops (and
counts, see ``EncodeStats``): grace notes; all but one note of a chord inside a voice (the
highest, or the lowest in the bottom voice); all but the first voice of a part with several
voices; microtones (pitches are respelled to the nearest semitone). Gaps inside a voice are filled with rests and underfull voices padded.

Which parts are encoded (``select_parts``): parts whose name starts with a vocal part word
(Soprano, Alto, Tenor, Bass, their Italian/German forms, and the part books of Renaissance
polyphony: Cantus, Quinto, Sextus, ...), in score order; if no part has such a name, every
part in score order, top to bottom. Parts left out are counted.
"""
from __future__ import annotations

import enum
import functools
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from fractions import Fraction

FORMAT_VERSION = 1

BAR, END = "|", "||"
VOCAL_PART_WORDS = ("soprano", "sopran", "canto", "alto", "alt", "tenor", "tenore", "bass", "basso",
                    # the part books of Renaissance polyphony (Monteverdi's fifth voice is the Quinto)
                    "cantus", "superius", "discantus", "altus", "contratenor", "bassus", "quinto", "quintus",
                    "sesto", "sextus", "septimo", "septimus", "vagans")
SATB_NAMES = ("Soprano", "Alto", "Tenor", "Bass")
MAX_VOICES = 16
# Bounds that keep every parsed text renderable (music21 would otherwise spend minutes splitting
# a 10,000-quarter note): durations and measures up to 64 quarters, no finer than 1/128 quarter.
MAX_QUARTERS = 64
MAX_DENOMINATOR = 128


# ----------------------------------------------------------------------------- tokens

class Kind(enum.Enum):
    BAR = "bar"
    END = "end"
    KEY = "key"
    TIME = "time"
    LENGTH = "length"
    VOICE = "voice"
    NOTE = "note"
    REST = "rest"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    number: int | None = None  # KEY: sharps; VOICE: voice number (1-based)
    duration: Fraction | None = None  # NOTE/REST: duration; LENGTH: measure length; TIME: bar length
    pitch: str | None = None  # NOTE: spelled pitch, e.g. "Bb3"
    tie: bool = False
    fermata: bool = False


_DUR = r"(\d+(?:\.\d+)?|\d+/\d+)"
_TOKEN_RE = re.compile(
    rf"(?P<bar>\|)$|(?P<end>\|\|)$|K:(?P<key>-?\d)$|T:(?P<num>\d{{1,2}})/(?P<den>1|2|4|8|16|32)$"
    rf"|L:(?P<len>{_DUR})$|V(?P<voice>[1-9]\d?)$"
    rf"|(?P<pitch>[A-G](?:##?|bb?)?\d):(?P<ndur>{_DUR})(?P<nferm>\^?)(?P<tie>~?)$"
    rf"|R:(?P<rdur>{_DUR})(?P<rferm>\^?)$"
)


@functools.lru_cache(maxsize=4096)
def format_duration(quarters: Fraction) -> str:
    """1.5 -> '1.5', 1/8 -> '0.125', 1/3 -> '1/3' (binary values as exact decimals)."""
    quarters = Fraction(quarters)
    if quarters.denominator & (quarters.denominator - 1) == 0:
        return f"{float(quarters):.10f}".rstrip("0").rstrip(".")
    return f"{quarters.numerator}/{quarters.denominator}"


def _header_words() -> tuple[str, ...]:
    keys = [f"K:{sharps}" for sharps in range(-7, 8)]
    times = [f"T:{n}/{d}" for d in (1, 2, 4, 8, 16) for n in range(1, 17)]
    lengths = sorted({Fraction(k, 8) for k in range(1, 129)} | {Fraction(k, 3) for k in range(1, 49)})
    return tuple(keys + times + [f"L:{format_duration(length)}" for length in lengths])


def bar_length(time_signature: str) -> Fraction:
    numerator, denominator = time_signature.split("/")
    return Fraction(4 * int(numerator), int(denominator))


def _duration(text: str) -> Fraction | None:
    value = Fraction(text)
    if 0 < value <= MAX_QUARTERS and value.denominator <= MAX_DENOMINATOR:
        return value
    return None


def parse_token(text: str) -> Token | None:
    """The Token for one whitespace-free word, or None if it is not a word of the language."""
    match = _TOKEN_RE.match(text)
    if match is None:
        return None
    g = match.groupdict()
    if g["bar"]:
        return Token(Kind.BAR, text)
    if g["end"]:
        return Token(Kind.END, text)
    if g["key"] is not None:
        sharps = int(g["key"])
        return Token(Kind.KEY, text, number=sharps) if -7 <= sharps <= 7 else None
    if g["num"] is not None:
        length = bar_length(f"{g['num']}/{g['den']}")
        return Token(Kind.TIME, text, duration=length) if 0 < length <= MAX_QUARTERS else None
    if g["len"] is not None:
        length = _duration(g["len"])
        return Token(Kind.LENGTH, text, duration=length) if length else None
    if g["voice"] is not None:
        number = int(g["voice"])
        return Token(Kind.VOICE, text, number=number) if number <= MAX_VOICES else None
    if g["pitch"] is not None:
        duration = _duration(g["ndur"])
        if not duration:
            return None
        return Token(Kind.NOTE, text, duration=duration, pitch=g["pitch"],
                     tie=bool(g["tie"]), fermata=bool(g["nferm"]))
    duration = _duration(g["rdur"])
    return Token(Kind.REST, text, duration=duration, fermata=bool(g["rferm"])) if duration else None


# The closed set of header words every vocabulary holds, whatever its training split contains, so
# that any melody can be harmonized: every key signature, time signatures up to 16 beats of whole
# to sixteenth notes, and measure lengths (pickups, short or long measures) in 32nd notes or
# triplet eighths up to 16 quarters.
HEADER_WORDS = _header_words()


# ----------------------------------------------------------------------------- the piece

@dataclass(frozen=True)
class Event:
    """One note or rest of one voice."""
    pitch: str | None  # spelled pitch with octave ("C#4", "Bb3"); None for a rest
    duration: Fraction
    tie: bool = False  # tied to the voice's next note (same pitch)
    fermata: bool = False

    @property
    def text(self) -> str:
        head = "R" if self.pitch is None else self.pitch
        return f"{head}:{format_duration(self.duration)}{'^' if self.fermata else ''}{'~' if self.tie else ''}"


@dataclass
class Measure:
    length: Fraction  # the measure's actual length in quarter notes
    voices: list[list[Event]]
    key: int | None = None  # key signature (sharps) set at this measure, None = unchanged
    time: str | None = None  # time signature set at this measure, None = unchanged


@dataclass
class Piece:
    measures: list[Measure] = field(default_factory=list)

    @property
    def num_voices(self) -> int:
        return len(self.measures[0].voices) if self.measures else 0

    def top_voice(self) -> "Piece":
        """The piece's top voice alone (its melody), with the same measures and signatures."""
        return Piece([Measure(m.length, m.voices[:1], m.key, m.time) for m in self.measures])

    def voice_events(self, voice: int) -> list[tuple[Fraction, Event]]:
        """(offset from the start of the piece, event) for one voice."""
        out, start = [], Fraction(0)
        for measure in self.measures:
            offset = start
            for event in measure.voices[voice]:
                out.append((offset, event))
                offset += event.duration
            start += measure.length
        return out

    def annotated_words(self) -> list[tuple[str, tuple | None]]:
        """The piece's words in order, each note or rest with (voice, measure index, offset in
        the measure, event); the one place that decides how a piece is written out."""
        words, time = [], None
        for index, measure in enumerate(self.measures):
            words.append((BAR, None))
            if measure.key is not None:
                words.append((f"K:{measure.key}", None))
            if measure.time is not None:
                time = measure.time
                words.append((f"T:{time}", None))
            if time is None or measure.length != bar_length(time):
                words.append((f"L:{format_duration(measure.length)}", None))
            for number, events in enumerate(measure.voices, 1):
                words.append((f"V{number}", None))
                offset = Fraction(0)
                for event in events:
                    words.append((event.text, (number - 1, index, offset, event)))
                    offset += event.duration
        words.append((END, None))
        return words

    def to_text(self) -> str:
        return " ".join(word for word, _ in self.annotated_words())


# ----------------------------------------------------------------------------- grammar

# What kind of token may follow what: the first half of the grammar. The second half (measure
# arithmetic, voice order, ties, required header) is in Grammar.violation.
FOLLOWS: dict[Kind | None, frozenset[Kind]] = {
    None: frozenset({Kind.BAR}),  # start of a piece
    Kind.BAR: frozenset({Kind.KEY, Kind.TIME, Kind.LENGTH, Kind.VOICE}),
    Kind.KEY: frozenset({Kind.TIME, Kind.LENGTH, Kind.VOICE}),
    Kind.TIME: frozenset({Kind.LENGTH, Kind.VOICE}),
    Kind.LENGTH: frozenset({Kind.VOICE}),
    Kind.VOICE: frozenset({Kind.NOTE, Kind.REST}),
    Kind.NOTE: frozenset({Kind.NOTE, Kind.REST, Kind.VOICE, Kind.BAR, Kind.END}),
    Kind.REST: frozenset({Kind.NOTE, Kind.REST, Kind.VOICE, Kind.BAR, Kind.END}),
    Kind.END: frozenset({Kind.BAR}),  # another piece may follow
}
HEADER_KINDS = (Kind.KEY, Kind.TIME, Kind.LENGTH)


class Violation(enum.Enum):
    """Why a token may not come next (the parser repairs each of these its own way)."""
    ORDER = "token out of place"
    NEED_KEY = "first measure lacks a key signature"
    NEED_TIME = "first measure lacks a time signature"
    VOICE_ORDER = "voice out of order"
    TOO_MANY_VOICES = "more voices than the piece has"
    OVERFILL = "voice overfills its measure"
    UNDERFILL = "voice underfills its measure"
    MISSING_VOICES = "measure lacks voices"
    TIE_PITCH = "tie to a different pitch or a rest"
    OPEN_TIE = "piece ends with a tie open"


class Grammar:
    """State machine over tokens. `violation(token)` says whether a token may come next; `advance`
    consumes one that may. Cheap enough to run once per generated token."""

    def __init__(self, num_voices: int | None = None):
        self.fixed_voices = num_voices
        self.reset()

    def reset(self) -> None:
        self.last: Kind | None = None
        self.num_voices = self.fixed_voices  # known after the first measure
        self.key: int | None = None
        self.time: str | None = None
        self.bar_length: Fraction | None = None
        self.measure_length = Fraction(0)
        self.measure_index = -1
        self.voice = 0  # current voice number, 0 before V1
        self.filled = Fraction(0)  # duration so far in the current voice
        self.open_ties: dict[int, str] = {}  # voice -> pitch its next note must have
        self.voice_ranges: dict[int, list[int]] = {}

    @property
    def in_first_measure(self) -> bool:
        return self.measure_index == 0

    @property
    def remaining(self) -> Fraction:
        """What the current voice still has to fill."""
        return self.measure_length - self.filled

    def _measure_complete(self) -> Violation | None:
        if self.filled < self.measure_length:
            return Violation.UNDERFILL
        if self.num_voices is not None and self.voice < self.num_voices:
            return Violation.MISSING_VOICES
        return None

    def violation(self, token: Token) -> Violation | None:
        kind = token.kind
        if kind not in FOLLOWS[self.last]:
            return Violation.ORDER
        if kind in (Kind.BAR, Kind.END) and self.last in (Kind.NOTE, Kind.REST):
            problem = self._measure_complete()
            if problem is not None:
                return problem
            if kind is Kind.END and self.open_ties:
                return Violation.OPEN_TIE
        elif kind is Kind.TIME and self.last is Kind.BAR and self.in_first_measure and self.key is None:
            return Violation.NEED_KEY
        elif kind in (Kind.LENGTH, Kind.VOICE) and self.in_first_measure and self.last in (Kind.BAR, Kind.KEY):
            return Violation.NEED_KEY if self.key is None else Violation.NEED_TIME
        elif kind is Kind.VOICE:
            if self.last in (Kind.NOTE, Kind.REST) and self.filled < self.measure_length:
                return Violation.UNDERFILL
            if self.num_voices is not None and token.number > self.num_voices:
                return Violation.TOO_MANY_VOICES
            if token.number != self.voice + 1:
                return Violation.VOICE_ORDER
        elif kind in (Kind.NOTE, Kind.REST):
            if token.duration > self.remaining:
                return Violation.OVERFILL
            tied_pitch = self.open_ties.get(self.voice)
            if tied_pitch is not None and token.pitch != tied_pitch:
                return Violation.TIE_PITCH
        return None

    def advance(self, token: Token) -> None:
        kind = token.kind
        if kind is Kind.BAR:
            if self.last is None or self.last is Kind.END:
                self.reset()
            elif self.measure_index == 0 and self.num_voices is None:
                self.num_voices = self.voice
            self.measure_index += 1
            self.voice = 0
            self.filled = Fraction(0)
            self.measure_length = self.bar_length or Fraction(0)
        elif kind is Kind.KEY:
            self.key = token.number
        elif kind is Kind.TIME:
            self.time = token.text[2:]
            self.bar_length = self.measure_length = token.duration
        elif kind is Kind.LENGTH:
            self.measure_length = token.duration
        elif kind is Kind.VOICE:
            self.voice = token.number
            self.filled = Fraction(0)
        elif kind in (Kind.NOTE, Kind.REST):
            self.filled += token.duration
            if token.tie:
                self.open_ties[self.voice] = token.pitch
            else:
                self.open_ties.pop(self.voice, None)
        self.last = kind

    def drop_tie(self, voice: int) -> None:
        self.open_ties.pop(voice, None)


# ----------------------------------------------------------------------------- text -> pieces

@dataclass
class ParseReport:
    """Repairs made while turning text into pieces, by kind."""
    repairs: Counter = field(default_factory=Counter)
    measures: set = field(default_factory=set)  # (piece number, measure index) of each repair

    def add(self, what: str, where: tuple[int, int] | None = None) -> None:
        self.repairs[what] += 1
        if where is not None:
            self.measures.add(where)

    @property
    def total(self) -> int:
        return sum(self.repairs.values())

    def lines(self) -> list[str]:
        return [f"{count:5d}  {what}" for what, count in self.repairs.most_common()]


class _PieceBuilder:
    """Feeds tokens through a Grammar, repairing what does not fit, and collects Pieces."""

    def __init__(self, report: ParseReport):
        self.report = report
        self.pieces: list[Piece] = []
        self.grammar = Grammar()
        self.piece: Piece | None = None
        self.skipping_voice = False  # dropping an extra voice's notes

    def _repaired(self, what: str) -> None:
        where = (len(self.pieces), len(self.piece.measures) - 1) if self.piece and self.piece.measures else None
        self.report.add(what, where)

    # -- accepting tokens (the only place pieces grow)
    def _accept(self, token: Token) -> None:
        g = self.grammar
        kind = token.kind
        if kind is Kind.BAR:
            if self.piece is None:
                self.piece = Piece()
            g.advance(token)
            self.piece.measures.append(Measure(length=g.measure_length, voices=[]))
            return
        # a key or time signature restated unchanged is not a change: not recorded
        unchanged = (kind is Kind.KEY and token.number == g.key) or (kind is Kind.TIME and token.text[2:] == g.time)
        g.advance(token)
        if self.piece is None:  # END right after a piece closed: nothing to record
            return
        measure = self.piece.measures[-1] if self.piece.measures else None
        if kind is Kind.END:
            self.pieces.append(self.piece)
            self.piece = None
        elif kind is Kind.KEY:
            measure.key = None if unchanged else token.number
        elif kind is Kind.TIME:
            measure.time = None if unchanged else g.time
            measure.length = g.measure_length
        elif kind is Kind.LENGTH:
            measure.length = g.measure_length
        elif kind is Kind.VOICE:
            measure.voices.append([])
        else:
            measure.voices[-1].append(Event(token.pitch, token.duration, token.tie, token.fermata))

    def _pad_voice(self) -> None:
        remaining = self.grammar.remaining
        if remaining > 0:
            self._repaired("voice underfilled: padded with a rest")
            self._drop_open_tie()
            self._accept(Token(Kind.REST, "", duration=remaining))

    def _fill_missing_voices(self, up_to: int) -> None:
        while self.grammar.voice < up_to:
            self._repaired("missing voice: filled with rests")
            self._accept(Token(Kind.VOICE, "", number=self.grammar.voice + 1))
            self._pad_voice_silently()

    def _pad_voice_silently(self) -> None:
        self._drop_open_tie()
        self._accept(Token(Kind.REST, "", duration=self.grammar.remaining))

    def _drop_open_tie(self, voice: int | None = None) -> None:
        voice = self.grammar.voice if voice is None else voice
        if voice not in self.grammar.open_ties:
            return
        self._repaired("tie to a different pitch or a rest: dropped")
        self.grammar.drop_tie(voice)
        # the tied note is the voice's last event, in this measure or (across the bar) the one before
        for measure in reversed(self.piece.measures):
            if len(measure.voices) >= voice and measure.voices[voice - 1]:
                events = measure.voices[voice - 1]
                events[-1] = replace(events[-1], tie=False)
                return

    def _complete_measure(self) -> None:
        g = self.grammar
        if g.last is Kind.VOICE or g.last in (Kind.NOTE, Kind.REST):
            self._pad_voice()
            if g.num_voices is not None:
                self._fill_missing_voices(g.num_voices)

    def _discard_open_measure(self) -> None:
        """Drop a measure that has a bar line but no voices; rebuild the grammar state."""
        self._repaired("empty measure: dropped")
        self.piece.measures.pop()
        tokens = _tokens_of_piece(self.piece)
        self.grammar = Grammar()
        for token in tokens:
            self.grammar.advance(token)

    # -- the repair loop
    def feed(self, token: Token) -> None:
        g = self.grammar
        if self.skipping_voice:
            if token.kind in (Kind.NOTE, Kind.REST):
                return
            self.skipping_voice = False
        for _ in range(MAX_VOICES + 4):  # each repair makes progress; bound it anyway
            problem = g.violation(token)
            if problem is None:
                self._accept(token)
                return
            if not self._repair(problem, token):
                return
            g = self.grammar
        raise AssertionError(f"repair did not converge on {token.text!r}")  # a bug, not bad input

    def _repair(self, problem: Violation, token: Token) -> bool:
        """Fix the state so `token` fits (return True) or drop the token (return False)."""
        g, kind = self.grammar, token.kind
        if problem is Violation.ORDER:
            if g.last is None or g.last is Kind.END:
                self._repaired("text outside a piece: ignored")
                return False
            if g.last is Kind.VOICE and kind in (Kind.VOICE, Kind.BAR, Kind.END):
                self._pad_voice()  # an empty voice: a rest fills it
                return True
            if kind in (Kind.NOTE, Kind.REST) and g.last in (Kind.BAR,) + HEADER_KINDS:
                if g.in_first_measure and (g.key is None or g.bar_length is None):
                    return self._repair(Violation.NEED_KEY if g.key is None else Violation.NEED_TIME, token)
                self._repaired("missing voice marker: inserted")
                self._accept(Token(Kind.VOICE, "", number=1))
                return True
            if kind is Kind.END and g.last in (Kind.BAR,) + HEADER_KINDS:
                self._discard_open_measure()
                if not self.piece.measures:
                    self.piece = None
                    self.grammar = Grammar()
                    return False
                return True
            self._repaired(f"{token.text or kind.value} out of place: dropped")
            return False
        if problem is Violation.NEED_KEY:
            self._repaired("missing key signature: K:0 assumed")
            self._accept(Token(Kind.KEY, "K:0", number=0))
            return True
        if problem is Violation.NEED_TIME:
            self._repaired("missing time signature: T:4/4 assumed")
            self._accept(Token(Kind.TIME, "T:4/4", duration=Fraction(4)))
            return True
        if problem is Violation.UNDERFILL:
            self._pad_voice()
            return True
        if problem is Violation.MISSING_VOICES:
            self._fill_missing_voices(g.num_voices)
            return True
        if problem is Violation.VOICE_ORDER:
            if token.number > g.voice + 1:
                self._fill_missing_voices(token.number - 1)
                return True
            self._repaired("repeated voice: dropped")
            self.skipping_voice = True
            return False
        if problem is Violation.TOO_MANY_VOICES:
            self._repaired("extra voice: dropped")
            self.skipping_voice = True
            return False
        if problem is Violation.OVERFILL:
            remaining = g.remaining
            if remaining <= 0:
                self._repaired("voice overfills its measure: note dropped")
                return False
            self._repaired("voice overfills its measure: note shortened")
            shortened = replace(token, duration=remaining)
            self._repair_tie_then_accept(shortened)
            return False
        if problem is Violation.TIE_PITCH:
            self._drop_open_tie()
            return True
        if problem is Violation.OPEN_TIE:
            for voice in list(g.open_ties):
                self._drop_open_tie(voice)
            return True
        raise AssertionError(problem)

    def _repair_tie_then_accept(self, token: Token) -> None:
        if self.grammar.violation(token) is Violation.TIE_PITCH:
            self._drop_open_tie()
        self._accept(token)

    def finish(self) -> None:
        if self.piece is None:
            return
        g = self.grammar
        if g.last in (Kind.BAR,) + HEADER_KINDS:
            self._discard_open_measure()
        if self.piece.measures:
            self._repaired("piece not closed with ||: closed")
            self._complete_measure()
            self.feed(Token(Kind.END, END))
        self.piece = None


def _tokens_of_piece(piece: Piece) -> list[Token]:
    text = piece.to_text()
    return [parse_token(word) for word in text.split()[:-1]]  # without the closing ||


def parse(text: str) -> tuple[list[Piece], ParseReport]:
    """Pieces in `text`, repairing what the grammar does not allow; the report lists each repair."""
    report = ParseReport()
    builder = _PieceBuilder(report)
    for word in text.split():
        token = parse_token(word)
        if token is None:
            builder._repaired("unknown token: skipped")
            continue
        builder.feed(token)
    builder.finish()
    return builder.pieces, report


def validate(text: str) -> list[str]:
    """Why `text` is not a valid sequence of pieces; empty if it is."""
    pieces, report = parse(text)
    problems = report.lines()
    if not pieces:
        problems.append("no piece")
    return problems


# ----------------------------------------------------------------------------- music21 -> piece

@dataclass
class EncodeStats:
    """What the encoder had to drop or fill in, by kind (ideally all zero)."""
    counts: Counter = field(default_factory=Counter)


def _is_vocal_name(name: str | None) -> bool:
    if not name:
        return False
    first = re.split(r"[\s\d.,]+", name.strip().lower(), maxsplit=1)[0]
    return first in VOCAL_PART_WORDS


def select_parts(score) -> list:
    """The parts to encode: the vocal ones by name, else all, in score order (top to bottom)."""
    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    vocal = [part for part in parts if _is_vocal_name(part.partName)]
    return vocal or parts


def _spelled(pitch, stats: EncodeStats) -> str:
    modifier = pitch.accidental.modifier if pitch.accidental else ""
    octave = pitch.implicitOctave
    if modifier not in ("", "#", "##", "-", "--") or not 0 <= octave <= 9:
        # microtones, triple accidentals and extreme octaves are not in the language
        stats.counts["pitches respelled or clamped to the language's range"] += 1
        from music21 import pitch as m21pitch
        simple = m21pitch.Pitch(ps=min(max(round(pitch.ps), 12), 119))
        modifier, octave = (simple.accidental.modifier if simple.accidental else ""), simple.implicitOctave
        return f"{simple.step}{modifier.replace('-', 'b')}{octave}"
    return f"{pitch.step}{modifier.replace('-', 'b')}{octave}"


def _measures_of(part) -> list:
    from music21 import stream
    measures = list(part.getElementsByClass(stream.Measure))
    if not measures:
        measures = list(part.makeMeasures().getElementsByClass(stream.Measure))
    return measures


@functools.lru_cache(maxsize=4096)
def _quarters(value) -> Fraction:
    """music21 offsets and lengths (floats, or Fractions for tuplets) as exact Fractions."""
    return Fraction(value)


@dataclass
class _ScannedMeasure:
    events: list[Event]
    length: Fraction  # where the voice's last event ends
    sharps: int | None  # key signature at the measure's start, if any
    time: str | None  # time signature at the measure's start, if any


def _scan_measure(measure, is_bottom: bool, stats: EncodeStats) -> _ScannedMeasure:
    """One pass over a measure's elements: its signatures and one voice's events."""
    from music21 import chord, expressions, key, meter, note, stream
    sharps = time = None
    voices, notes_and_rests, container = [], [], measure
    for element in measure.elements:
        if isinstance(element, note.GeneralNote):
            notes_and_rests.append(element)
        elif isinstance(element, stream.Voice):
            voices.append(element)
        elif measure.elementOffset(element) == 0:
            if sharps is None and isinstance(element, key.KeySignature):
                sharps = element.sharps
            elif time is None and isinstance(element, meter.TimeSignature):
                time = element.ratioString
    if voices:
        stats.counts["extra voices inside a part dropped (measures)"] += 1
        container = voices[0]
        notes_and_rests = [e for e in container.elements if isinstance(e, note.GeneralNote)]
    events, position = [], Fraction(0)
    for element in notes_and_rests:
        if element.duration.isGrace:
            stats.counts["grace notes dropped"] += 1
            continue
        # elementOffset, not .offset: the latter follows whichever stream last held the element
        offset = _quarters(container.elementOffset(element))
        duration = _quarters(element.duration.quarterLength)
        if offset < position:
            stats.counts["overlapping events dropped"] += 1
            continue
        if offset > position:
            stats.counts["gaps filled with rests"] += 1
            events.append(Event(None, offset - position))
        position = offset + duration
        fermata = any(isinstance(e, expressions.Fermata) for e in element.expressions)
        if isinstance(element, (note.Rest, note.Unpitched)):
            events.append(Event(None, duration, False, fermata))
            continue
        if isinstance(element, chord.Chord):
            stats.counts["chords reduced to one note"] += 1
            pitches = sorted(element.pitches, key=lambda p: p.ps)
            pitch = pitches[0] if is_bottom else pitches[-1]
        else:
            pitch = element.pitch
        tied = element.tie is not None and element.tie.type in ("start", "continue")
        events.append(Event(_spelled(pitch, stats), duration, tied, fermata))
    return _ScannedMeasure(events, position, sharps, time)


def _majority(values: list, what: str, stats: EncodeStats):
    """Parts may disagree on a signature (a source error); the language has one per measure,
    so the value most parts carry wins."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    if len(set(values)) > 1:
        stats.counts[f"parts disagree on the {what} (majority kept)"] += 1
    return Counter(values).most_common(1)[0][0]


def piece_from_score(score, stats: EncodeStats | None = None) -> Piece:
    """Encode a music21 Score (or a single Part) into a Piece."""
    stats = stats if stats is not None else EncodeStats()
    parts = select_parts(score)
    dropped = (len(score.parts) if hasattr(score, "parts") else 1) - len(parts)
    if dropped > 0:
        stats.counts["parts not named as voices dropped (instruments beside the voices)"] += dropped
    part_measures = [_measures_of(part) for part in parts]
    piece, current_key, current_time = Piece(), None, None
    for index in range(max(len(measures) for measures in part_measures)):
        row = [measures[index] if index < len(measures) else None for measures in part_measures]
        if any(m is None for m in row):
            stats.counts["measures missing in a part (filled with rests)"] += 1
        scanned = [_ScannedMeasure([], Fraction(0), None, None) if m is None else
                   _scan_measure(m, number == len(row) - 1, stats) for number, m in enumerate(row)]
        sharps = _majority([s.sharps for s in scanned], "key signature", stats)
        time = _majority([s.time for s in scanned], "time signature", stats)
        measure = Measure(length=Fraction(0), voices=[s.events for s in scanned])
        if sharps is not None and sharps != current_key:
            current_key = measure.key = sharps
        if time is not None and time != current_time:
            current_time = measure.time = time
        if index == 0:
            if current_key is None:
                stats.counts["no key signature (K:0 assumed)"] += 1
                current_key = measure.key = 0
            if current_time is None:
                stats.counts["no time signature (T:4/4 assumed)"] += 1
                current_time = measure.time = "4/4"
        content = max(s.length for s in scanned)
        measure.length = content if content > 0 else bar_length(current_time)
        for s in scanned:
            if s.length < measure.length:
                if s.events:
                    stats.counts["underfull voices padded with rests"] += 1
                s.events.append(Event(None, measure.length - s.length))
        piece.measures.append(measure)
    _drop_bad_ties(piece, stats)
    return piece


def _drop_bad_ties(piece: Piece, stats: EncodeStats) -> None:
    """A tie must lead to the same pitch (the grammar's rule); the source may disagree."""
    for voice in range(piece.num_voices):
        located = [(m, i) for m in piece.measures for i in range(len(m.voices[voice]))]
        for position, (measure, i) in enumerate(located):
            event = measure.voices[voice][i]
            if not event.tie:
                continue
            if position + 1 < len(located):
                next_measure, j = located[position + 1]
                if next_measure.voices[voice][j].pitch == event.pitch:
                    continue
            stats.counts["ties to a different pitch or nothing dropped"] += 1
            measure.voices[voice][i] = replace(event, tie=False)


def encode_score(score, stats: EncodeStats | None = None) -> str:
    return piece_from_score(score, stats).to_text()


def part_names(num_voices: int) -> list[str]:
    return list(SATB_NAMES) if num_voices == 4 else [f"Voice {i}" for i in range(1, num_voices + 1)]


def _music21_pitch_name(spelled: str) -> str:
    return spelled[0] + spelled[1:-1].replace("b", "-") + spelled[-1]


# ----------------------------------------------------------------------------- pitch arithmetic

@functools.lru_cache(maxsize=None)
def midi_number(spelled: str) -> int:
    """MIDI number of a spelled pitch ("C4" -> 60)."""
    from music21 import pitch
    return pitch.Pitch(_music21_pitch_name(spelled)).midi


@functools.lru_cache(maxsize=None)
def transpose_pitch(spelled: str, interval_name: str) -> str | None:
    """The spelled pitch moved by a music21 interval name ("M2", "m-3"), None if the result
    has an accidental or octave the language lacks (a triple sharp, say)."""
    from music21 import pitch
    moved = pitch.Pitch(_music21_pitch_name(spelled)).transpose(interval_name)
    modifier = moved.accidental.modifier if moved.accidental else ""
    if modifier not in ("", "#", "##", "-", "--") or not 0 <= moved.octave <= 9:
        return None
    return f"{moved.step}{modifier.replace('-', 'b')}{moved.octave}"


@functools.lru_cache(maxsize=None)
def key_signature_shift(interval_name: str) -> int:
    """How many sharps an interval adds to a key signature (M2: +2, m2: -5)."""
    from music21 import key
    return key.KeySignature(0).transpose(interval_name).sharps


def transpose_text(text: str, interval_name: str) -> str | None:
    """Transpose encoded text by an interval, in the text domain (no music21 streams): every
    pitch respelled, every key signature shifted. None if a pitch or key falls outside the
    language (more than 7 sharps or flats, triple accidentals)."""
    shift = key_signature_shift(interval_name)
    words = []
    for word in text.split():
        if "A" <= word[0] <= "G":
            name, rest = word.split(":", 1)
            moved = transpose_pitch(name, interval_name)
            if moved is None:
                return None
            words.append(f"{moved}:{rest}")
        elif word.startswith("K:"):
            sharps = int(word[2:]) + shift
            if not -7 <= sharps <= 7:
                return None
            words.append(f"K:{sharps}")
        else:
            words.append(word)
    return " ".join(words)


def voice_ranges(piece: Piece) -> list[tuple[int, int] | None]:
    """(lowest, highest) MIDI number per voice; None for a voice with only rests."""
    ranges = []
    for voice in range(piece.num_voices):
        numbers = [midi_number(e.pitch) for m in piece.measures for e in m.voices[voice] if e.pitch]
        ranges.append((min(numbers), max(numbers)) if numbers else None)
    return ranges


# ----------------------------------------------------------------------------- piece -> music21

def score_from_piece(piece: Piece, title: str | None = None):
    """Build a music21 Score: one Part per voice, real Measures, signatures, pickup, ties, fermatas."""
    from music21 import clef, expressions, key, meter, metadata, note, stream, tie

    score = stream.Score()
    if title:
        score.metadata = metadata.Metadata(title=title)
    names = part_names(piece.num_voices)
    clefs = ([clef.TrebleClef, clef.TrebleClef, clef.Treble8vbClef, clef.BassClef]
             if piece.num_voices == 4 else None)
    pickup = bool(piece.measures) and piece.measures[0].time is not None and \
        piece.measures[0].length < bar_length(piece.measures[0].time)
    for voice, name in enumerate(names):
        part = stream.Part(id=name)
        part.partName = name
        time, tied_before = None, False
        for index, source in enumerate(piece.measures):
            measure = stream.Measure(number=index if pickup else index + 1)
            if index == 0 and clefs:
                measure.insert(0, clefs[voice]())
            if source.key is not None:
                measure.insert(0, key.KeySignature(source.key))
            if source.time is not None:
                time = source.time
                measure.insert(0, meter.TimeSignature(time))
            for event in source.voices[voice]:
                element = note.Rest() if event.pitch is None else note.Note(_music21_pitch_name(event.pitch))
                element.duration.quarterLength = event.duration
                if event.fermata:
                    element.expressions.append(expressions.Fermata())
                if event.pitch is not None and (event.tie or tied_before):
                    element.tie = tie.Tie("continue" if event.tie and tied_before else
                                          "start" if event.tie else "stop")
                tied_before = event.tie
                measure.append(element)
            missing = bar_length(time) - source.length
            if missing > 0:
                if index == 0:
                    measure.paddingLeft = missing
                else:
                    measure.paddingRight = missing
            part.append(measure)
        if clefs is None:
            part.getElementsByClass(stream.Measure).first().insert(0, clef.bestClef(part, recurse=True))
        score.insert(0, part)
    return score
