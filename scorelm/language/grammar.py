"""The grammar of the score language (what may follow what, how measures fill, how ties and chords
run) and the parser that turns text into pieces, repairing what the grammar does not allow.

The grammar is the ``FOLLOWS`` table plus the arithmetic of ``Grammar.violation``; the parser,
the validator and the constrained decoder (scorelm.decoding) all use it.
"""
from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field, replace
from fractions import Fraction

from scorelm.language.piece import Event, Measure, Piece
from scorelm.language.tokens import END, MAX_VOICES, Kind, Token, parse_token, pitch_rank

# What kind of token may follow what: the first half of the grammar. The second half (measure
# arithmetic, voice order, ties, chord order, required header) is in Grammar.violation.
FOLLOWS: dict[Kind | None, frozenset[Kind]] = {
    None: frozenset({Kind.BAR}),  # start of a piece
    Kind.BAR: frozenset({Kind.KEY, Kind.TIME, Kind.LENGTH, Kind.VOICE}),
    Kind.KEY: frozenset({Kind.TIME, Kind.LENGTH, Kind.VOICE}),
    Kind.TIME: frozenset({Kind.PARTS, Kind.LENGTH, Kind.VOICE}),
    Kind.PARTS: frozenset({Kind.PARTS, Kind.LENGTH, Kind.VOICE}),
    Kind.LENGTH: frozenset({Kind.VOICE}),
    Kind.VOICE: frozenset({Kind.NOTE, Kind.REST}),
    Kind.NOTE: frozenset({Kind.NOTE, Kind.CHORD, Kind.REST, Kind.VOICE, Kind.BAR, Kind.END}),
    Kind.CHORD: frozenset({Kind.NOTE, Kind.CHORD, Kind.REST, Kind.VOICE, Kind.BAR, Kind.END}),
    Kind.REST: frozenset({Kind.NOTE, Kind.REST, Kind.VOICE, Kind.BAR, Kind.END}),
    Kind.END: frozenset({Kind.BAR}),  # another piece may follow
}
HEADER_KINDS = (Kind.KEY, Kind.TIME, Kind.PARTS, Kind.LENGTH)
EVENT_KINDS = (Kind.NOTE, Kind.CHORD, Kind.REST)


class Violation(enum.Enum):
    """Why a token may not come next (the parser repairs each of these its own way)."""
    ORDER = "token out of place"
    NEED_KEY = "first measure lacks a key signature"
    NEED_TIME = "first measure lacks a time signature"
    PARTS_PLACE = "parts stated after the first measure's header"
    PARTS_VOICES = "parts hold another number of voices than the piece"
    VOICE_ORDER = "voice out of order"
    TOO_MANY_VOICES = "more voices than the piece has"
    OVERFILL = "voice overfills its measure"
    UNDERFILL = "voice underfills its measure"
    MISSING_VOICES = "measure lacks voices"
    CHORD_ORDER = "chord note not below the one before it"
    TIE_PITCH = "tie to a different pitch or a rest"
    OPEN_TIE = "piece ends with a tie open"


class Grammar:
    """State machine over tokens. `violation(token)` says whether a token may come next; `advance`
    consumes one that may. Cheap enough to run once per generated token.

    Ties: `open_ties[voice]` holds the pitches the voice's last event tied onward; its next event
    must sound each of them (a chord's notes come highest first, so a note of the chord may not
    pass below a tied pitch the chord has not yet sounded), and `pending` is what the event being
    written still owes."""

    def __init__(self, num_voices: int | None = None):
        self.fixed_voices = num_voices
        self.reset()

    def reset(self) -> None:
        self.last: Kind | None = None
        self.num_voices = self.fixed_voices  # known after the parts or the first measure
        self.parts: list[tuple[int, ...]] = []
        self.optional: frozenset[int] = frozenset()  # voice numbers (1-based) that may be absent
        self.key: int | None = None
        self.time: str | None = None
        self.bar_length: Fraction | None = None
        self.measure_length = Fraction(0)
        self.measure_index = -1
        self.voice = 0  # current voice number, 0 before the first voice
        self.filled = Fraction(0)  # duration so far in the current voice
        self.open_ties: dict[int, tuple[str, ...]] = {}  # voice -> pitches its next event must sound
        self.pending: tuple[str, ...] = ()  # tied pitches the current event has still to sound
        self.chord_low: str | None = None  # the current event's lowest note so far

    @property
    def in_first_measure(self) -> bool:
        return self.measure_index == 0

    @property
    def remaining(self) -> Fraction:
        """What the current voice still has to fill."""
        return self.measure_length - self.filled

    def required(self, voice: int) -> bool:
        """Whether a voice must appear in this measure: the first of its staff, or tied into it."""
        return voice not in self.optional or voice in self.open_ties

    def skips_required(self, up_to: int) -> bool:
        """A required voice lies between the current one and `up_to` (exclusive)."""
        return any(self.required(voice) for voice in range(self.voice + 1, up_to))

    def _measure_complete(self) -> Violation | None:
        if self.filled < self.measure_length:
            return Violation.UNDERFILL
        if self.num_voices is not None and self.skips_required(self.num_voices + 1):
            return Violation.MISSING_VOICES
        return None

    def violation(self, token: Token) -> Violation | None:
        kind = token.kind
        if kind not in FOLLOWS[self.last]:
            return Violation.ORDER
        if self.pending and kind is not Kind.CHORD:
            return Violation.TIE_PITCH  # the event ends without a pitch tied into it
        if self.last is Kind.PARTS and kind is not Kind.PARTS and self.fixed_voices is not None \
                and self._parts_voices() != self.fixed_voices:
            return Violation.PARTS_VOICES
        if kind in (Kind.BAR, Kind.END) and self.last in EVENT_KINDS:
            problem = self._measure_complete()
            if problem is not None:
                return problem
            if kind is Kind.END and self.open_ties:
                return Violation.OPEN_TIE
        elif kind is Kind.TIME and self.last is Kind.BAR and self.in_first_measure and self.key is None:
            return Violation.NEED_KEY
        elif kind in (Kind.LENGTH, Kind.VOICE) and self.in_first_measure and self.last in (Kind.BAR, Kind.KEY):
            return Violation.NEED_KEY if self.key is None else Violation.NEED_TIME
        elif kind is Kind.PARTS:
            if not self.in_first_measure:
                return Violation.PARTS_PLACE
            total = sum(sum(staves) for staves in self.parts) + sum(token.staves)
            if total > (self.fixed_voices or MAX_VOICES):
                return Violation.PARTS_VOICES
        elif kind is Kind.VOICE:
            if self.last in EVENT_KINDS and self.filled < self.measure_length:
                return Violation.UNDERFILL
            limit = self.num_voices or (self._parts_voices() if self.parts else None)
            if limit is not None and token.number > limit:
                return Violation.TOO_MANY_VOICES
            if token.number <= self.voice or self.skips_required(token.number):
                return Violation.VOICE_ORDER
        elif kind is Kind.NOTE:
            if token.duration > self.remaining:
                return Violation.OVERFILL
            tied = self.open_ties.get(self.voice, ())
            if tied and (token.grace or any(pitch_rank(p) > pitch_rank(token.pitch) for p in tied)):
                return Violation.TIE_PITCH
        elif kind is Kind.CHORD:
            if pitch_rank(token.pitch) >= pitch_rank(self.chord_low):
                return Violation.CHORD_ORDER
            if any(pitch_rank(p) > pitch_rank(token.pitch) for p in self.pending):
                return Violation.TIE_PITCH  # passed below a tied pitch without sounding it
        elif kind is Kind.REST:
            if token.duration > self.remaining:
                return Violation.OVERFILL
            if self.open_ties.get(self.voice):
                return Violation.TIE_PITCH
        return None

    def _parts_voices(self) -> int:
        return sum(sum(staves) for staves in self.parts)

    def _set_parts(self) -> None:
        """The parts are all stated: the voice count and which voices may be absent follow."""
        self.num_voices = self._parts_voices()
        optional, voice = set(), 0
        for staves in self.parts:
            for count in staves:
                optional.update(range(voice + 2, voice + count + 1))
                voice += count
        self.optional = frozenset(optional)

    def advance(self, token: Token) -> None:
        kind = token.kind
        if self.last is Kind.PARTS and kind is not Kind.PARTS:
            self._set_parts()
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
        elif kind is Kind.PARTS:
            self.parts.append(token.staves)
        elif kind is Kind.LENGTH:
            self.measure_length = token.duration
        elif kind is Kind.VOICE:
            self.voice = token.number
            self.filled = Fraction(0)
        elif kind is Kind.NOTE:
            self.filled += token.duration
            self.pending = tuple(p for p in self.open_ties.pop(self.voice, ()) if p != token.pitch)
            self.chord_low = token.pitch
            if token.tie:
                self.open_ties[self.voice] = (token.pitch,)
        elif kind is Kind.CHORD:
            self.pending = tuple(p for p in self.pending if p != token.pitch)
            self.chord_low = token.pitch
            if token.tie:
                self.open_ties[self.voice] = self.open_ties.get(self.voice, ()) + (token.pitch,)
        elif kind is Kind.REST:
            self.filled += token.duration
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
            else:
                self._close_measure()
            g.advance(token)
            self.piece.measures.append(Measure(length=g.measure_length, voices=[]))
            return
        # a key or time signature restated unchanged is not a change: not recorded
        unchanged = (kind is Kind.KEY and token.number == g.key) or (kind is Kind.TIME and token.text[2:] == g.time)
        if kind is Kind.END and self.piece is not None:
            self._close_measure()
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
        elif kind is Kind.PARTS:
            self.piece.parts = tuple(g.parts)
        elif kind is Kind.LENGTH:
            measure.length = g.measure_length
        elif kind is Kind.VOICE:
            while len(measure.voices) < token.number:
                measure.voices.append([])  # absent voices before it
        elif kind is Kind.CHORD:
            events = measure.voices[-1]
            events[-1] = replace(events[-1], chord=events[-1].chord + ((token.pitch, token.tie),))
        else:
            measure.voices[-1].append(Event(token.pitch, token.duration, token.tie, token.fermata, token.grace))

    def _close_measure(self) -> None:
        """Absent voices at the end of a measure are empty lists, so that every measure has one
        list per voice."""
        if self.piece.measures and self.grammar.num_voices:
            voices = self.piece.measures[-1].voices
            while len(voices) < self.grammar.num_voices:
                voices.append([])

    def _pad_voice(self) -> None:
        remaining = self.grammar.remaining
        if remaining > 0:
            self._repaired("voice underfilled: padded with a rest")
            self._settle_ties()
            self._accept(Token(Kind.REST, "", duration=remaining))

    def _fill_missing_voices(self, up_to: int) -> None:
        g = self.grammar
        while g.skips_required(up_to + 1):
            missing = next(v for v in range(g.voice + 1, up_to + 1) if g.required(v))
            self._repaired("missing voice: filled with rests")
            self._accept(Token(Kind.VOICE, "", number=missing))
            self._settle_ties()
            self._accept(Token(Kind.REST, "", duration=g.remaining))

    def _settle_ties(self) -> None:
        """Before a rest: no tie may lead into it, and the current event owes nothing."""
        self._drop_pending_ties()
        self._drop_open_tie()

    def _drop_open_tie(self, voice: int | None = None) -> None:
        voice = self.grammar.voice if voice is None else voice
        if voice not in self.grammar.open_ties:
            return
        self._repaired("tie to a different pitch or a rest: dropped")
        self.grammar.drop_tie(voice)
        # the tied event is the voice's last event, in this measure or (across the bar) an earlier one
        event_list = self._last_events(voice, 1)
        if event_list:
            events, i = event_list[0]
            events[i] = _untied(events[i], None)

    def _drop_pending_ties(self) -> None:
        """The current event lacks pitches its predecessor tied into it: those ties go."""
        g = self.grammar
        if not g.pending:
            return
        self._repaired("tie to a different pitch or a rest: dropped")
        located = self._last_events(g.voice, 2)
        if len(located) == 2:
            events, i = located[1]
            events[i] = _untied(events[i], set(g.pending))
        g.pending = ()

    def _last_events(self, voice: int, count: int) -> list[tuple[list[Event], int]]:
        """The voice's last `count` events, latest first, as (their list, index)."""
        out = []
        for measure in reversed(self.piece.measures):
            if len(measure.voices) >= voice:
                events = measure.voices[voice - 1]
                for i in range(len(events) - 1, -1, -1):
                    out.append((events, i))
                    if len(out) == count:
                        return out
        return out

    def _complete_measure(self) -> None:
        g = self.grammar
        if g.last is Kind.VOICE or g.last in EVENT_KINDS:
            self._drop_pending_ties()
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
            if token.kind in EVENT_KINDS:
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
        if problem in (Violation.PARTS_PLACE, Violation.PARTS_VOICES, Violation.CHORD_ORDER):
            self._repaired(f"{problem.value}: {token.text} dropped")
            return False
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
            if g.violation(shortened) is Violation.TIE_PITCH:
                self._settle_ties()
            self._accept(shortened)
            return False
        if problem is Violation.TIE_PITCH:
            if g.pending:
                self._drop_pending_ties()
            else:
                self._drop_open_tie()
            return True
        if problem is Violation.OPEN_TIE:
            for voice in list(g.open_ties):
                self._drop_open_tie(voice)
            return True
        raise AssertionError(problem)

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


def _untied(event: Event, pitches: set[str] | None) -> Event:
    """The event with its ties onward dropped (all, or those of `pitches`)."""
    drop = (lambda pitch: True) if pitches is None else (lambda pitch: pitch in pitches)
    return replace(event, tie=event.tie and not drop(event.pitch),
                   chord=tuple((pitch, tie and not drop(pitch)) for pitch, tie in event.chord))


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
