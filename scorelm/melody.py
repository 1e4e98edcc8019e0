"""A melody fitted to the model that harmonizes it: shown in note values, measures, a key and
words the model knows (renotated, paired, moved, respelled, or joined to a neighbour where it
has no words for a note), and what the model writes under it written back in the melody's own.

fit() decides all of it for one melody; harmonize() (scorelm.writing) writes under the fit and
puts the melody's own words back.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from fractions import Fraction

from scorelm import language
from scorelm.cli import UserError
from scorelm.decoding import Vocabulary
from scorelm.model_folder import ModelCard


def meter_for_the_model(text: str, card: ModelCard) -> tuple[Fraction, str]:
    """How the note values of a melody or prompt (its text) are scaled for the model to write
    with it, and the text so scaled (what the model writes is written back): 1, or 1/2 or 1/4
    where the text is in half- or whole-note beats (T:3/2, T:4/1) that the training split hardly
    used but the same meter in quarter-note beats is the model's own (the chorales' 3/4 and 4/4). A model that never saw a
    melody's meter writes the lower voices against its note values as if they were quarters:
    sixteenth-note runs and strings of rests under a hymn tune's half notes. 1 for a model whose
    scorelm.json predates the count."""
    known_words = card.known_headers("time_signatures")
    meters = {word[2:] for word in text.split() if word.startswith("T:")}
    if not known_words or not meters:
        return Fraction(1), text
    known = {word[2:] for word in known_words}
    if meters <= known:
        return Fraction(1), text
    for factor in (Fraction(1, 2), Fraction(1, 4)):
        scaled = {language.scale_durations(f"T:{meter}", factor) for meter in meters}
        if all(word and word[2:] in known for word in scaled):
            shown = language.scale_durations(text, factor)
            if shown is not None:
                return factor, shown
    return Fraction(1), text


# A meter the chorales lack that is two measures of one they have: a melody in it is harmonized
# with each two measures shown as one (2/4, the meter of 158 of 530 Essen tunes, as 4/4).
PAIRED_METERS = {"2/4": "4/4"}
def measures_for_the_model(text: str, card: ModelCard) -> tuple[tuple[str, list] | None, str]:
    """How a melody's measures are shown to the model, and the text so shown: None where its meter
    is the model's own (or it changes key or meter in mid-piece); else (its meter, the lengths of
    the measures each shown measure holds), with each two measures after a pickup written as one
    of PAIRED_METERS' meter where the model knows that one and hardly knows the melody's. Under 40
    Essen tunes in 2/4 (`T:2/4` a word the one-hour model never learned) the lower voices' chords
    came 10% closer to Bach's shown in 4/4, with fewer notes outside the key signature's scale
    (9.2% against 10.3%) and fewer consecutive fifths and octaves (README: folk tunes)."""
    known = card.known_headers("time_signatures")
    meters = {word[2:] for word in text.split() if word.startswith("T:")}
    if not known or len(meters) != 1:
        return None, text
    meter = meters.pop()
    target = PAIRED_METERS.get(meter)
    if target is None or f"T:{meter}" in known or f"T:{target}" not in known:
        return None, text
    paired = language.paired_measures(language.parse(text)[0][0], target)
    if paired is None:
        return None, text
    return (meter, paired[1]), paired[0].to_text()


def key_for_the_model(text: str, card: ModelCard, vocabulary: Vocabulary) -> tuple[str | None, str]:
    """The interval by which a melody (the top voice of `text`) is moved for the model to
    harmonize it, and the text so moved (what the model writes is moved back): None where the
    model has a word for each of its notes, or for the same sound in tied notes (melody_plan),
    and knows its key signature (at least KNOWN_SHARE of the training pieces use it, where
    scorelm.json counts them). Otherwise the smallest move, within an octave either way, that
    leaves both, the melody kept inside the soprano's range in the training split where it fits
    there: a folk tune climbing to B flat 5 or C6, which the chorales' sopranos never reach,
    goes down a step or a third; one in seven flats, a key signature no training piece is in (a
    word whose embedding the model never learned), goes to one that some are. Where no move
    shows every note as written (a duration the model has no words for, as a sixteenth rest),
    the move, or none, whose melody_plan joins fewest notes to a neighbour; melody_plan's error
    where none can."""
    known = card.known_headers("key_signatures")

    def writable(shown: str, approximate: bool) -> bool:
        if known is not None and not {word for word in shown.split() if word.startswith("K:")} <= known:
            return False
        try:
            melody_plan(language.parse(shown)[0][0], vocabulary, approximate)
        except UserError:
            return False
        return True

    if writable(text, False):
        return None, text
    lowest, highest = language.voice_ranges(language.parse(text)[0][0].top_voice())[0] or (60, 60)
    ranges = card.ranges()
    low, high = ranges[0] if ranges else (lowest, highest)

    def outside(semitones: int) -> int:  # semitones beyond the soprano's range
        return max(0, low - lowest - semitones) + max(0, highest + semitones - high)

    order = sorted((s for s in range(-12, 13) if s), key=lambda s: (outside(s), abs(s), s))
    moves = []  # moved one by one, the first that shows every note as written taken (each costs ~15 ms)
    for semitones in order:
        moved = language.transposed_by(text, semitones)
        if moved is not None:
            if writable(moved[1], False):
                return moved
            moves.append(moved)
    # no move shows every note as written: the one that joins fewest to a neighbour (melody_plan)
    joinable = [moved for moved in [(None, text)] + moves if writable(moved[1], True)]
    if joinable:
        return min(joinable, key=lambda moved: len(joined_words(language.parse(moved[1])[0][0], vocabulary)))
    melody_plan(language.parse(text)[0][0], vocabulary)  # its error says which word is missing
    raise UserError("the melody's key signature is one the model hardly knows, in every key it could be moved to")


def written_back(text: str, factor: Fraction, interval: str | None = None, pairing: tuple | None = None) -> str:
    """What the constrained decoder wrote from a renotated, transposed or paired melody or prompt,
    in their own note values, key and measures (never out of the language: each measure as long
    as the given meter's, and moving back what was moved leaves every spelling inside it but for
    a triple sharp or flat, which is an error). Paired measures that were not all written (a
    harmonization cut short) are left as written."""
    if interval is not None:
        moved = language.transpose_text(text, language.inverse_interval(interval))
        if moved is None:
            raise UserError(f"what the model wrote {interval_words(interval)} cannot be moved back")
        text = moved
    if pairing is not None:
        pieces, report = language.parse(text)
        split = language.split_measures(pieces[0], pairing[1], pairing[0]) if pieces and not report.total else None
        text = split.to_text() if split is not None else text
    return text if factor == 1 else language.scale_durations(text, 1 / factor)


def interval_words(interval: str) -> str:
    """'M-2' -> 'a major second lower'."""
    from music21 import interval as m21interval
    moved = m21interval.Interval(interval)
    name = moved.niceName.lower()
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name} {'lower' if moved.direction < 0 else 'higher'}"


def melody_plan(melody: language.Piece, vocabulary, approximate: bool = True) -> list[list[str]]:
    """The forced words of each measure (bar line, header, V1 and the melody's notes) of the
    piece's top voice. A note or rest the model has no word for is shown to it as the same sound
    in words it knows (shown_words: tied notes, or the pitch spelled otherwise), and a grace note
    it does not know is left out of its view. Where none write it (a sixteenth rest, a dotted
    sixteenth) and `approximate`, its measure is shown with such notes joined to a neighbour
    (joined_rhythm). restore_melody puts the melody's own words back into what is written."""
    plan, tied_in = [], None
    for measure in _measures([word for word, _ in melody.top_voice().annotated_words()[:-1]]):
        start = measure.index("V1") + 1 if "V1" in measure else len(measure)
        for word in measure[:start]:
            if word not in vocabulary.ids_of:
                raise UserError(f"the melody's {word!r} is not in the model's vocabulary")
        notes = measure[start:]
        missing = [word for word in notes if shown_words(word, vocabulary) is None]
        if missing and approximate:
            notes = joined_rhythm(notes, vocabulary, tied_in) or notes
        words = []
        for word in notes:
            respelled = shown_words(word, vocabulary)
            if respelled is None:
                raise UserError(f"the melody's {missing[0] if missing else word!r} is not in the model's vocabulary")
            words += respelled
        plan.append(measure[:start] + words)
        last = language.parse_token(words[-1]) if words else None
        tied_in = last.pitch if last is not None and last.kind is language.Kind.NOTE and last.tie else None
    return plan


def _measures(words: list[str]) -> list[list[str]]:
    """Words grouped by measure, each list beginning with its bar line."""
    out = []
    for word in words:
        if word == language.BAR:
            out.append([])
        out[-1].append(word)
    return out


def joined_rhythm(words: list[str], vocabulary: Vocabulary, tied_in: str | None = None) -> list[str] | None:
    """One measure of a melody (its note and rest words) shown to the model in note values it has
    words for, where some have none even as tied notes: each such note or rest is joined to the
    neighbour whose join the model can write (rather the join that keeps the earlier onset, then
    the shorter neighbour; joined again where need be), the join sounding the pitch of the note
    rather than a rest, of the longer of two notes, of the earlier if they are as long, and keeping
    a fermata either had. A dotted eighth and a sixteenth rest become a quarter; a dotted
    sixteenth and a thirty-second, an eighth. The lower voices are written against that outline
    and the melody's own words are put back (restore_melody), so the measure's length, and every
    voice's, is unchanged. `tied_in`: the pitch a tie from the
    measure before holds into this one (the join that begins the measure keeps it). None where a
    word is no note or rest, or the whole measure joined is still not writable."""
    events = []
    for word in words:
        token = language.parse_token(word)
        if token is None or token.kind not in (language.Kind.NOTE, language.Kind.REST):
            return None
        if not token.grace:
            events.append(language.Event(token.pitch, token.duration, token.tie, token.fermata))

    def writable(event: language.Event) -> bool:
        return shown_words(event.text, vocabulary) is not None

    def joined(first: language.Event, second: language.Event, index: int) -> language.Event:
        if index == 0 and tied_in is not None:
            pitch = first.pitch  # the tie into the measure goes on sounding
        elif first.tie and first.pitch == second.pitch:
            pitch = first.pitch  # a note tied to its own continuation: joined exactly
        else:
            pitch = max((first, second), key=lambda e: (e.pitch is not None, e.duration, e is first)).pitch
        return language.Event(pitch, first.duration + second.duration,
                              second.tie and pitch is not None and pitch == second.pitch, first.fermata or second.fermata)

    while True:
        bad = next((index for index, event in enumerate(events) if not writable(event)), None)
        if bad is None:
            return [event.text for event in events]
        if len(events) == 1:
            return None
        options = []
        for other in (bad - 1, bad + 1):
            if 0 <= other < len(events):
                first = min(bad, other)
                merged = joined(events[first], events[first + 1], first)
                # rather one the model can write, then one whose later onset goes (no note begins
                # earlier than written), then the shorter neighbour
                options.append((not writable(merged), merged.pitch != events[first].pitch, events[other].duration,
                                first, merged))
        *_, first, merged = min(options, key=lambda option: option[:4])
        events[first:first + 2] = [merged]


def joined_words(melody: language.Piece, vocabulary: Vocabulary) -> list[str]:
    """The melody's words that the model is shown joined to a neighbour (melody_plan)."""
    return [word for word, _ in melody.top_voice().annotated_words()
            if (token := language.parse_token(word)) is not None
            and token.kind in (language.Kind.NOTE, language.Kind.REST)
            and shown_words(word, vocabulary) is None]


def shown_words(word: str, vocabulary: Vocabulary) -> list[str] | None:
    """The words a melody's note or rest is shown to the model as, the same sound: the word itself
    where the model has it, else tied notes (tied_respelling), spelled as written or else
    enharmonically with one accidental fewer or more (E4 for a source's F flat 4, which the
    chorales never write: rather than the whole tune moved for that one spelling). None where
    none of these are words the model has."""
    if word in vocabulary.ids_of:
        return [word]
    respelled = tied_respelling(word, vocabulary)
    if respelled is not None:
        return respelled
    token = language.parse_token(word)
    if token is None or token.kind is not language.Kind.NOTE:
        return None
    for spelling in enharmonic_spellings(token.pitch):
        other = spelling + word[len(token.pitch):]
        if other in vocabulary.ids_of:
            return [other]
        respelled = tied_respelling(other, vocabulary)
        if respelled is not None:
            return respelled
    return None


@functools.lru_cache(maxsize=None)
def enharmonic_spellings(pitch: str) -> tuple[str, ...]:
    """The same key on the keyboard spelled otherwise, with at most one sharp or flat: Fb4 ->
    (E4,), C#5 -> (Db5,), in music21's order."""
    from music21 import pitch as music21_pitch
    return tuple(other.nameWithOctave.replace("-", "b") for other in
                 music21_pitch.Pitch(language.music21_pitch_name(pitch)).getAllCommonEnharmonics(alterLimit=1))


def tied_respelling(word: str, vocabulary: Vocabulary, depth: int = 3) -> list[str] | None:
    """The same note (or rest) written as up to `depth` tied notes of durations the model knows,
    the fermata on the first that can carry it, the word's own tie on the last: 'F#4:6^' ->
    ['F#4:4^~', 'F#4:2']. [] for a grace note (it takes no time: leaving it out of the model's
    view changes no other voice). None if there is none."""
    token = language.parse_token(word)
    if token is None or token.kind not in (language.Kind.NOTE, language.Kind.REST):
        return None
    if token.grace:
        return []
    head = token.pitch if token.kind is language.Kind.NOTE else "R"
    tie = "~" if token.kind is language.Kind.NOTE else ""  # a rest's parts follow one another untied
    known = vocabulary.ids_of
    durations = sorted({known_token.duration for known_token in vocabulary.symbol.values()
                        if known_token.kind is token.kind and known_token.duration
                        and (known_token.pitch if token.kind is language.Kind.NOTE else "R") == head
                        and known_token.duration < token.duration}, reverse=True)
    # the fermata where the note begins if any split allows it (the lower voices place theirs by it)
    for fermata_first, first in itertools.product((True, False) if token.fermata else (False,), durations):
        head_word = f"{head}:{language.format_duration(first)}{'^' if fermata_first else ''}{tie}"
        if head_word not in known:
            continue
        tail = (f"{head}:{language.format_duration(token.duration - first)}"
                f"{'^' if token.fermata and not fermata_first else ''}{'~' if token.tie else ''}")
        if tail in known:
            return [head_word, tail]
        further = tied_respelling(tail, vocabulary, depth - 1) if depth > 2 else None
        if further:
            return [head_word, *further]
    return None


def restore_melody(text: str, melody: language.Piece) -> str:
    """A harmonization with the melody's own words in its top voice, measure by measure (see
    melody_plan: the model may have been shown some of them respelled)."""
    written = _measures(text.split())
    given = _measures(melody.top_voice().to_text().split())
    if len(written) != len(given):
        return text  # not finished as planned: left as it is
    words = []
    for mine, theirs in zip(written, given):
        theirs = theirs[theirs.index("V1"):len(theirs) - (theirs[-1] == language.END)]
        lower = mine.index("V2") if "V2" in mine else len(mine) - (mine[-1] == language.END)
        words += mine[:mine.index("V1")] + theirs + mine[lower:]
    return " ".join(words)


def harmonization_budget(forced: list[list[str]], num_voices: int) -> int:
    """Tokens for a harmonization: the forced words, up to 40 per lower voice and measure, the end."""
    return sum(len(m) for m in forced) + len(forced) * (num_voices - 1) * 40 + 2


@dataclass
class MelodyFit:
    """How a melody (its text) is shown to the model: `shown`, the text the model sees; `forced`,
    the words each measure must begin with (melody_plan); what was changed to get there (the
    note values scaled by `factor`, two measures shown as one (`pairing`), moved by `interval`)
    and the melody's notes the model sees joined to a neighbour (`joined`, in its own key and
    note values)."""
    text: str
    shown: str
    forced: list[list[str]]
    factor: Fraction = Fraction(1)
    pairing: tuple | None = None
    interval: str | None = None
    joined: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        """What a user is told of the fit, one line each."""
        lines = []
        if self.factor != 1:
            lines.append(renotation_note(self.text, self.factor, "harmonizing the melody"))
        if self.pairing:
            lines.append(f"the model hardly knows {self.pairing[0]}; harmonizing the melody in "
                         f"{PAIRED_METERS[self.pairing[0]]}, two measures as one, and writing it back in {self.pairing[0]}")
        if self.interval:
            lines.append(f"the model hardly knows the melody's key signature or has no words for some of its notes; "
                         f"harmonizing it {interval_words(self.interval)} and writing it back at its own pitch")
        if self.joined:
            distinct = sorted(set(self.joined))
            lines.append(f"the model has no words for {len(self.joined)} of the melody's notes and rests even as tied "
                         f"notes ({', '.join(distinct[:3])}{', ...' if len(distinct) > 3 else ''}): it harmonizes "
                         f"them joined to a neighbouring note, and the melody is written as it is")
        return lines

    def written_back(self, text: str) -> str:
        """What the model wrote under the fit, in the melody's own note values, key and measures."""
        return written_back(text, self.factor, self.interval, self.pairing)


def renotation_note(text: str, factor: Fraction, doing: str) -> str:
    """What a user is told when `text` is shown to the model with its note values scaled by
    `factor` (meter_for_the_model): '... harmonizing the melody in 3/4 (every note value halved)'."""
    meter = next(word[2:] for word in text.split() if word.startswith("T:"))
    return (f"the model hardly knows {meter}; {doing} in {language.scale_durations(f'T:{meter}', factor)[2:]} "
            f"(every note value {'halved' if factor == Fraction(1, 2) else 'a quarter as long'}) and writing it "
            f"back in {meter}")


def fit(text: str, card: ModelCard, vocabulary: Vocabulary) -> MelodyFit:
    """The melody (the top voice of `text`) fitted to the model: renotated where the model hardly
    knows its meter (meter_for_the_model), two measures as one where it knows that meter better
    (measures_for_the_model), moved where it lacks the key or words for some notes
    (key_for_the_model), and planned measure by measure (melody_plan). A one-line UserError
    where no words of the model can write it."""
    factor, shown = meter_for_the_model(text, card)
    pairing, shown = measures_for_the_model(shown, card)
    interval, shown = key_for_the_model(shown, card, vocabulary)
    shown_melody = language.parse(shown)[0][0]
    forced = melody_plan(shown_melody, vocabulary)
    joined = written_back(" ".join(joined_words(shown_melody, vocabulary)), factor, interval).split()
    return MelodyFit(text, shown, forced, factor, pairing, interval, joined)
