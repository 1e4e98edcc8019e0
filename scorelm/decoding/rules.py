"""Voice-leading rules for the constrained decoder: the table of rules (data, each switchable on
its own, each with its own check in checks.CHECKS), their strengths, and the harmony they
reason with (intervals, tonics, closing chords), which the scorecard counts with too.

Strengths: hard (a note that breaks a rule is not chosen; if every candidate breaks some rule,
rules are dropped from the end of RULES until one remains: counted, never at the cost of a valid
score), soft (the logits of a note that breaks a rule are lowered by its penalty), and mixed, the
default: each rule at its own strength in RULES, hard where Bach (nearly) never breaks the rule
(the final chord, consecutive fifths and octaves, a chromatic clash such as A against A flat:
together 0.7% of his notes), soft where he or his editors do (fermatas marked in the soprano
only, crossings, spacing, range, overlap: 4.3% of his notes together), so that the decoder can still write what he wrote. The rule against a
lower voice resting under a given melody's note is soft too, though Bach breaks it in 0.06% of
his notes: it is there for melodies unlike his (a folk tune's dotted rhythms, under which the
model falls silent), and as a penalty the particles weigh it like the model's probability.

signature_tonic is the one rule about a piece as a whole rather than its lines. final_chord
accepts a close on a church mode's final (a Phrygian melody under a signature of C ends on E),
as Bach's modal melodies need; but a piece the model writes freely has no such melody, and left
to itself it closes on a mode's final two or three times as often as Bach (on the fifth degree,
a close that sounds like a half cadence, seven to nine times as often). So where no melody is
given (free samples, continuations), in a last measure known to be the last, the closing notes
that belong to no tonic chord of the signature break it; and a free sample that the model
closes off the signature's tonic has its last measure written again (generation.rewrite_ending),
as one that breaks final_chord has, unless it closes on the key music21 finds for the whole
piece (the model sometimes writes a piece in A major under a signature of D: its close on A is
its tonic, and a B major chord after it would be foreign). A harmonization follows its melody's
mode.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

from scorelm import language

# Textbook SATB ranges (MIDI numbers): soprano C4-G5, alto G3-D5, tenor C3-G4, bass E2-C4.
SATB_RANGES = [(60, 79), (55, 74), (48, 67), (40, 60)]
STEPS = "CDEFGAB"
# how the rules hold: off; soft (a rule-breaking note's logit lowered by its penalty); mixed (each
# rule at its Rule.strength: the default); hard (a rule-breaking note not chosen)
OFF, SOFT, MIXED, HARD = MODES = ("off", "soft", "mixed", "hard")


@dataclass(frozen=True)
class Rule:
    name: str
    what: str  # one line, for --help and reports
    penalty: float  # soft mode: nats taken off the logit of a token that breaks the rule
    strength: str  # in mixed mode: "hard" where Bach's notes (nearly) never break it, else "soft"


# In priority order: when every candidate breaks some rule, hard mode drops rules from the end. The
# final chord comes first: a piece that closes off the tonic is worse than one parallel at its cadence.
RULES = (
    Rule("final_chord", "the piece ends on a root-position tonic chord with a fermata in every voice (none under "
                        "a given melody whose last note has none), its third sounding (three or more voices)",
         4.0, "hard"),
    Rule("parallel_fifths", "consecutive perfect fifths between two voices, in parallel or contrary motion", 4.0, "hard"),
    Rule("parallel_octaves", "consecutive octaves or unisons between two voices, in parallel or contrary motion",
         4.0, "hard"),
    Rule("chromatic_clash", "a note sounds against another voice's note of the same letter with another accidental "
                            "(A against A flat)", 4.0, "hard"),
    Rule("fermata", "a lower voice has a fermata exactly where the soprano has one", 3.0, "soft"),
    Rule("voice_crossing", "a voice sounds above the voice written above it", 3.0, "soft"),
    Rule("spacing", "more than an octave between soprano and alto, or alto and tenor (four voices)", 2.0, "soft"),
    Rule("range", "a note outside its voice's textbook range (four voices: "
                  "soprano C4-G5, alto G3-D5, tenor C3-G4, bass E2-C4)", 2.0, "soft"),
    Rule("voice_overlap", "a voice moves past the note the voice above it has just left", 1.0, "soft"),
    Rule("rest", "under a given melody, a lower voice begins a rest while the melody sings", 3.0, "soft"),
    Rule("signature_tonic", "a piece with no given melody closes on its key signature's own major or minor "
                            "tonic, not on a church mode's final", 2.0, "soft"),
)
RULE_NAMES = tuple(rule.name for rule in RULES)


def hard_rules(mode: str, enabled) -> frozenset[str]:
    """The enabled rules that forbid in this mode (the others weigh): all in hard mode, none in
    soft or off, those of hard strength in mixed."""
    return frozenset(rule.name for rule in RULES if rule.name in enabled and
                     (mode == HARD or (mode == MIXED and rule.strength == "hard")))


def diatonic_step(spelled: str) -> int:
    """Diatonic step number of a spelled pitch (C4 -> 28, B#3 -> 27): letters, not semitones."""
    return 7 * int(spelled[-1]) + STEPS.index(spelled[0])

def interval_class_of(upper_midi: int, upper_step: int, lower_midi: int, lower_step: int) -> int:
    """5 for a perfect fifth (or compound: twelfth, ...), 1 for a perfect unison or octave (or
    compound), 0 otherwise; by spelling, as music21's simple interval names: C-G is a fifth, B#-G
    is not. Plain Python on single numbers; the decoder looks whole rows up in a table of these."""
    steps, semitones = upper_step - lower_step, upper_midi - lower_midi
    if steps < 0 or (steps == 0 and semitones < 0):
        steps, semitones = -steps, -semitones
    simple = semitones - 12 * (steps // 7)
    if steps % 7 == 4 and simple == 7:
        return 5
    return 1 if steps % 7 == 0 and simple == 0 else 0

def tonic_pitch_classes(key: int) -> tuple[int, int]:
    """The two tonics of a key signature: its major key's and its relative minor's."""
    major = (7 * key) % 12
    return major, (major + 9) % 12

@functools.lru_cache(maxsize=None)
def tonic_names(key: int) -> tuple[str, str]:
    """The spelled tonics of a key signature's major and relative minor keys (K:-3: Eb, C)."""
    from music21 import key as music21_key
    signature = music21_key.KeySignature(key)
    return tuple(signature.asKey(mode).tonic.name.replace("-", "b") for mode in ("major", "minor"))

def analysed_tonic(piece: "language.Piece") -> str:
    """The spelled tonic of the key music21 finds for the piece: its analyze("key"), the
    Aarden-Essen key profiles.

    music21's key finding reads only how long each pitch class sounds (every note's length added
    to its pitch class; a chord's length to each of its pitches; rests and grace notes nothing),
    so it is given just that: one note a pitch class, lasting as long as the piece sounds it;
    and its best key alone is asked for (analyze() also builds the 23 others as Key objects).
    The same tonic as analysing the whole score (tested on the chorales) in a hundredth of the
    time: building the score was a fifth of the time of writing a free piece."""
    from music21 import note, stream
    from music21.analysis import discrete
    lengths = [Fraction(0)] * 12
    for measure in piece.measures:
        for events in measure.voices:
            for event in events:
                if not event.grace:
                    for pitch in event.pitches:
                        lengths[language.midi_number(pitch) % 12] += event.duration
    sounding = stream.Stream()
    for pitch_class, length in enumerate(lengths):
        if length:
            sounding.append(note.Note(pitch_class, quarterLength=length))
    tonic, _, _ = discrete.analysisClassFromMethodName("key")().process(sounding)[0]
    return tonic.name.replace("-", "b")

def spelled_name(spelled: str) -> str:
    """The pitch without its octave: "F#4" -> "F#"."""
    return spelled[:-1]

def tonic_triad_tones(key: int) -> set[int]:
    """Pitch classes of the key signature's two tonic triads: its major key's and its relative
    minor's."""
    major, minor = tonic_pitch_classes(key)
    return {major, (major + 4) % 12, (major + 7) % 12, minor, (minor + 3) % 12, (minor + 7) % 12}

def modal_finals(key: int) -> tuple[int, ...]:
    """The finals of the church modes a chorale melody in this signature may close on besides
    the two tonics: Dorian (2nd degree), Phrygian (3rd) and Mixolydian (5th)."""
    major = (7 * key) % 12
    return tuple((major + degree) % 12 for degree in (2, 4, 7))

def consonant_root_position(bass_pc: int, upper_pcs) -> bool:
    """The chord is a major or minor triad (or an open fifth / unison) with its root in the bass."""
    intervals = {(pc - bass_pc) % 12 for pc in upper_pcs}
    return intervals <= {0, 3, 7} or intervals <= {0, 4, 7}

def has_third(bass_pc: int, upper_pcs) -> bool:
    """A voice above the bass sounds its third (major or minor): the chord is no open fifth."""
    return any((pc - bass_pc) % 12 in (3, 4) for pc in upper_pcs)

def closing_chord(bass_pc: int, upper_pcs, num_voices: int) -> bool:
    """What final_chord asks of the last chord over its bass: a root-position triad, its third
    sounding where there are three or more voices."""
    return consonant_root_position(bass_pc, upper_pcs) and (num_voices < 3 or has_third(bass_pc, upper_pcs))
