"""The words of the score language: what each one is, how it is spelled, the closed set of header
words, and pitch arithmetic on spelled pitches (MIDI numbers, order, transposition in the text)."""
from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from fractions import Fraction

# 2: chords inside a voice (+E4), several voices per staff (P:2/2), grace notes (C5:0).
# Every version-1 text is a version-2 text with the same meaning.
FORMAT_VERSION = 2

BAR, END = "|", "||"
MAX_VOICES = 16
MAX_STAVES = 3  # staves of one part (a piano has two, an organ three)
MAX_VOICES_PER_STAFF = 8
# Bounds that keep every parsed text renderable (music21 would otherwise spend minutes splitting
# a 10,000-quarter note): durations and measures up to 64 quarters, no finer than 1/128 quarter.
MAX_QUARTERS = 64
MAX_DENOMINATOR = 128


class Kind(enum.Enum):
    BAR = "bar"
    END = "end"
    KEY = "key"
    TIME = "time"
    PARTS = "parts"
    LENGTH = "length"
    VOICE = "voice"
    NOTE = "note"
    CHORD = "chord"  # a further note of the chord whose first note came just before
    REST = "rest"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    number: int | None = None  # KEY: sharps; VOICE: voice number (1-based)
    duration: Fraction | None = None  # NOTE/REST: duration (0: grace note); LENGTH: measure length; TIME: bar length
    pitch: str | None = None  # NOTE/CHORD: spelled pitch, e.g. "Bb3"
    tie: bool = False
    fermata: bool = False
    grace: bool = False  # NOTE: a grace note (no duration of its own)
    staves: tuple[int, ...] | None = None  # PARTS: voices on each staff of one part


_DUR = r"(\d+(?:\.\d+)?|\d+/\d+)"
_PITCH = r"[A-G](?:##?|bb?)?\d"
_TOKEN_RE = re.compile(
    rf"(?P<bar>\|)$|(?P<end>\|\|)$|K:(?P<key>-?\d)$|T:(?P<num>\d{{1,2}})/(?P<den>1|2|4|8|16|32)$"
    rf"|P:(?P<staves>[1-{MAX_VOICES_PER_STAFF}](?:/[1-{MAX_VOICES_PER_STAFF}]){{0,{MAX_STAVES - 1}}})$"
    rf"|L:(?P<len>{_DUR})$|V(?P<voice>[1-9]\d?)$"
    rf"|(?P<pitch>{_PITCH}):(?:(?P<grace>0)|(?P<ndur>{_DUR})(?P<nferm>\^?)(?P<tie>~?))$"
    rf"|\+(?P<member>{_PITCH})(?P<mtie>~?)$"
    rf"|R:(?P<rdur>{_DUR})(?P<rferm>\^?)$"
)


@functools.lru_cache(maxsize=4096)
def format_duration(quarters: Fraction) -> str:
    """1.5 -> '1.5', 1/8 -> '0.125', 1/3 -> '1/3' (binary values as exact decimals)."""
    quarters = Fraction(quarters)
    if quarters.denominator & (quarters.denominator - 1) == 0:
        return f"{float(quarters):.10f}".rstrip("0").rstrip(".")
    return f"{quarters.numerator}/{quarters.denominator}"


def bar_length(time_signature: str) -> Fraction:
    numerator, denominator = time_signature.split("/")
    return Fraction(4 * int(numerator), int(denominator))


def parts_word(staves: tuple[int, ...]) -> str:
    """The header word of one part: voices per staff, top staff first ((2, 2) -> 'P:2/2')."""
    return "P:" + "/".join(str(v) for v in staves)


def _duration(text: str) -> Fraction | None:
    value = Fraction(text)
    if 0 < value <= MAX_QUARTERS and value.denominator <= MAX_DENOMINATOR:
        return value
    return None


@functools.lru_cache(maxsize=1 << 16)  # a Token is immutable, and a corpus repeats its words thousands of times
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
    if g["staves"] is not None:
        return Token(Kind.PARTS, text, staves=tuple(int(v) for v in g["staves"].split("/")))
    if g["len"] is not None:
        length = _duration(g["len"])
        return Token(Kind.LENGTH, text, duration=length) if length else None
    if g["voice"] is not None:
        number = int(g["voice"])
        return Token(Kind.VOICE, text, number=number) if number <= MAX_VOICES else None
    if g["pitch"] is not None:
        if g["grace"]:
            return Token(Kind.NOTE, text, duration=Fraction(0), pitch=g["pitch"], grace=True)
        duration = _duration(g["ndur"])
        if not duration:
            return None
        return Token(Kind.NOTE, text, duration=duration, pitch=g["pitch"],
                     tie=bool(g["tie"]), fermata=bool(g["nferm"]))
    if g["member"] is not None:
        return Token(Kind.CHORD, text, duration=Fraction(0), pitch=g["member"], tie=bool(g["mtie"]))
    duration = _duration(g["rdur"])
    return Token(Kind.REST, text, duration=duration, fermata=bool(g["rferm"])) if duration else None


def _header_words() -> tuple[str, ...]:
    keys = [f"K:{sharps}" for sharps in range(-7, 8)]
    times = [f"T:{n}/{d}" for d in (1, 2, 4, 8, 16) for n in range(1, 17)]
    parts = [parts_word(staves) for staves in
             [(a,) for a in range(1, 5)] + [(a, b) for a in range(1, 5) for b in range(1, 5)]]
    lengths = sorted({Fraction(k, 8) for k in range(1, 129)} | {Fraction(k, 3) for k in range(1, 49)})
    return tuple(keys + times + parts + [f"L:{format_duration(length)}" for length in lengths])


# The closed set of header words every vocabulary holds, whatever its training split contains, so
# that any melody can be harmonized: every key signature, time signatures up to 16 beats of whole
# to sixteenth notes, parts of one or two staves with up to four voices each, and measure lengths
# (pickups, short or long measures) in 32nd notes or triplet eighths up to 16 quarters.
HEADER_WORDS = _header_words()


# ----------------------------------------------------------------------------- pitch arithmetic

def music21_pitch_name(spelled: str) -> str:
    """'Bb3' -> 'B-3', music21's spelling."""
    return spelled[0] + spelled[1:-1].replace("b", "-") + spelled[-1]


@functools.lru_cache(maxsize=None)
def midi_number(spelled: str) -> int:
    """MIDI number of a spelled pitch ("C4" -> 60)."""
    from music21 import pitch
    return pitch.Pitch(music21_pitch_name(spelled)).midi


_STEPS = "CDEFGAB"


@functools.lru_cache(maxsize=None)
def pitch_rank(spelled: str) -> tuple[int, int]:
    """The order of a chord's notes in the text (highest first): by sounding pitch, and between
    two spellings of one sound (E#4, F4) by letter, so that each chord has one spelling."""
    return midi_number(spelled), int(spelled[-1]) * 7 + _STEPS.index(spelled[0])


@functools.lru_cache(maxsize=None)
def transpose_pitch(spelled: str, interval_name: str) -> str | None:
    """The spelled pitch moved by a music21 interval name ("M2", "m-3"), None if the result
    has an accidental or octave the language lacks (a triple sharp, say)."""
    from music21 import pitch
    moved = pitch.Pitch(music21_pitch_name(spelled)).transpose(interval_name)
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
    language (more than 7 sharps or flats, triple accidentals). Chord notes keep their order:
    a transposition by one interval moves every note alike."""
    shift = key_signature_shift(interval_name)
    words = []
    for word in text.split():
        if "A" <= word[0] <= "G" or word[0] == "+":
            chord = word[0] == "+"
            name, colon, rest = word[chord:].partition(":")
            tie = name.endswith("~")
            moved = transpose_pitch(name.rstrip("~"), interval_name)
            if moved is None:
                return None
            words.append(("+" if chord else "") + moved + ("~" if tie else "") + colon + rest)
        elif word.startswith("K:"):
            sharps = int(word[2:]) + shift
            if not -7 <= sharps <= 7:
                return None
            words.append(f"K:{sharps}")
        else:
            words.append(word)
    return " ".join(words)


# The two spellings of each shift in semitones (music21 interval names); transposed_by takes the
# one whose key signature has fewer accidentals.
INTERVAL_SPELLINGS = {
    -12: ("P-8",), -11: ("M-7", "d-8"), -10: ("m-7", "A-6"), -9: ("M-6", "d-7"), -8: ("m-6", "A-5"),
    -7: ("P-5", "d-6"), -6: ("A-4", "d-5"), -5: ("P-4", "A-3"), -4: ("M-3", "d-4"), -3: ("m-3", "A-2"),
    -2: ("M-2", "d-3"), -1: ("m-2", "A-1"), 1: ("m2", "A1"), 2: ("M2", "d3"), 3: ("m3", "A2"), 4: ("M3", "d4"),
    5: ("P4", "A3"), 6: ("A4", "d5"), 7: ("P5", "d6"), 8: ("m6", "A5"), 9: ("M6", "d7"), 10: ("m7", "A6"),
    11: ("M7", "d8"), 12: ("P8",),
}


def transposed_by(text: str, semitones: int) -> tuple[str, str] | None:
    """`text` moved by `semitones` (-12..12, not 0), spelled with the interval that leaves its
    first key signature with fewer accidentals: (interval name, text), None if neither spelling
    stays in the language."""
    first_key = next((int(word[2:]) for word in text.split() if word.startswith("K:")), 0)
    # ties (six sharps or six flats) go to the name first in order: A1 before m2, as the datasets always had it
    spellings = sorted(INTERVAL_SPELLINGS[semitones], key=lambda name: (abs(first_key + key_signature_shift(name)), name))
    for interval_name in spellings:
        moved = transpose_text(text, interval_name)
        if moved is not None:
            return interval_name, moved
    return None


def inverse_interval(interval_name: str) -> str:
    """The music21 interval name that undoes `interval_name` ("M2" -> "M-2", "P-4" -> "P4")."""
    quality, size = interval_name[0], interval_name[1:]
    return quality + (size[1:] if size.startswith("-") else "-" + size)


_TIMED_WORD = re.compile(rf"(?P<head>(?:{_PITCH}|R):|L:)(?P<duration>{_DUR})(?P<tail>\^?~?)$")


def scale_durations(text: str, factor: Fraction) -> str | None:
    """The same music written in note values `factor` times as long, in the text domain: every
    duration and measure length multiplied, each time signature's lower number divided (T:4/2 at
    1/2 is T:4/4, a half note a quarter). Grace notes stay grace notes. None if a value falls
    outside the language (longer than 64 quarters, finer than 1/128, a lower number not 1-32)."""
    factor = Fraction(factor)
    words = []
    for word in text.split():
        timed = _TIMED_WORD.match(word)
        if word.startswith("T:"):
            numerator, denominator = word[2:].split("/")
            lower = Fraction(int(denominator)) / factor
            if lower.denominator != 1:
                return None
            word = f"T:{numerator}/{lower.numerator}"
        elif timed and timed["duration"] != "0":
            word = timed["head"] + format_duration(Fraction(timed["duration"]) * factor) + timed["tail"]
        else:
            words.append(word)
            continue
        if parse_token(word) is None:
            return None
        words.append(word)
    return " ".join(words)
