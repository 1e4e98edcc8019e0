"""What a user gives to write from: a prompt (score text, a score's first measures, or a new
piece's header), a score file, a melody; each read and checked, with a one-line error for what
cannot be used."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from scorelm import language
from scorelm.cli import UserError
from scorelm.decoding import Vocabulary


def key_signature(text: str) -> int:
    """--key: sharps (-7..7) or a key name: D, Bb, "F# minor", f#m."""
    try:
        sharps = int(text)
    except ValueError:
        from music21 import key
        name = "".join(text.replace("minor", "m").replace("major", "").split())
        minor = name.endswith("m")
        tonic = name[:-1] if minor else name
        if not re.fullmatch(r"[A-Ga-g][#b]?", tonic):
            raise UserError(f"--key {text!r}: give a number of sharps (-7..7) or a key such as D, Bb, 'F# minor'")
        tonic = tonic[0].upper() + tonic[1:].replace("b", "-")  # music21 writes flats as -
        sharps = key.Key(tonic.lower() if minor else tonic).sharps
    if not -7 <= sharps <= 7:
        raise UserError(f"--key {text!r}: at most 7 sharps or flats")
    return sharps


def build_prompt(text: str = language.BAR, *, score: str | None = None, measures: int | None = None,
                 key: str | None = None, time: str | None = None) -> str:
    """The score text to continue: `text` (words as the user typed them), or the first `measures`
    measures of a score file (all of them by default); with `key` (--key) and `time` (--time), the
    header of a new piece."""
    if score:
        piece = read_piece(score)
        kept = piece.measures[:measures] if measures else piece.measures
        prompt = language.Piece(kept).to_text().rsplit(" ", 1)[0]  # without the closing ||
    else:
        prompt = " ".join(text.split())
    if key is not None or time is not None:
        if prompt != language.BAR:
            raise UserError("--key and --time set the header of a new piece: use them with the prompt '|'")
        header = [f"K:{key_signature(key) if key is not None else 0}"]
        header.append(f"T:{time or '4/4'}")
        if language.parse_token(header[1]) is None:
            raise UserError(f"--time {time!r} is not a time signature such as 4/4 or 3/2")
        prompt = " ".join([prompt, *header])
    return prompt


def read_piece(path: str) -> language.Piece:
    """The piece in a score file music21 reads, or in a text file of the score language (.txt:
    the first piece, which must need no repair)."""
    if not Path(path).is_file():
        raise UserError(f"no such file: {path}")
    if Path(path).suffix.lower() == ".txt":
        pieces, report = language.parse(Path(path).read_text(errors="replace"))
        if not pieces:
            raise UserError(f"{path} holds no piece in the score language")
        if report.total:
            raise UserError(f"{path} is not valid score text: {report.repairs.most_common(1)[0][0]}")
        if len(pieces) > 1:
            print(f"note: {path} holds {len(pieces)} pieces; reading the first", file=sys.stderr)
        return pieces[0]
    try:
        score = language.read_score(path)
    except Exception as error:
        raise UserError(f"cannot read {path}: {' '.join(str(error).split())[:150]}") from None
    piece = language.piece_from_score(score)
    if not piece.measures:
        raise UserError(f"{path} holds no measures")
    return piece


def check_prompt(prompt: str, vocabulary: Vocabulary, num_voices: int) -> None:
    """Every word must be in the language and in the model's vocabulary, in grammatical order."""
    grammar = language.Grammar(num_voices)
    for word in prompt.split():
        token = language.parse_token(word)
        if token is None:
            raise UserError(f"prompt word {word!r} is not in the score language (see README: the language)")
        if word not in vocabulary.ids_of:
            raise UserError(f"prompt word {word!r} is not in the model's vocabulary")
        problem = grammar.violation(token)
        if problem is not None:
            raise UserError(f"prompt is not valid at {word!r}: {problem.value}")
        grammar.advance(token)
    if grammar.last is language.Kind.END:
        raise UserError("the prompt is a finished piece (ends with ||): nothing to continue")


def read_melody(path: str) -> language.Piece:
    """The melody to harmonize: the top voice of the file's piece."""
    melody = read_piece(path)
    if melody.num_voices != 1:
        print(f"note: {path} has several parts; harmonizing the top one", file=sys.stderr)
    return melody.top_voice()
