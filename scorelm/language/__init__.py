"""The score text language: one page that states it; the package holds its tokens, grammar,
encoder (music21 -> text) and decoder (text -> music21).

Everything ScoreLM knows about its text format lives in this package (format version 2; every
version-1 text is a version-2 text with the same meaning). A piece is a sequence of
whitespace-separated words::

    | K:-1 T:4/4 L:1 V1 A4:1 V2 F4:1 V3 C4:1 V4 F3:1 | V1 A4:1 G4:1 F4:1 G4:1~ V2 ...  ||

=============  ===============  ==============================================================
word           example          meaning
=============  ===============  ==============================================================
``|``          ``|``            begins a measure (so ``|`` alone is the prompt for a new piece)
``||``         ``||``           ends the piece (a final barline)
``K:<n>``      ``K:-2``         key signature, ``n`` sharps (negative = flats), -7..7
``T:<n>/<d>``  ``T:3/4``        time signature
``P:<v>/...``  ``P:2/2``        one part: how many voices each of its staves holds, top staff
                                first (first measure only; see below)
``L:<dur>``    ``L:1``          this measure's length, only when it differs from the time
                                signature's (pickup, short final measure)
``V<k>``       ``V2``           the k-th voice's notes of this measure follow (1 = top voice)
note           ``C#4:1.5^~``    spelled pitch with octave, ``:``, duration in quarter notes;
                                ``^`` fermata, ``~`` tied to the voice's next note
chord note     ``+E4~``         a further note of the chord begun by the note before it: same
                                duration and fermata, its own ``~``; a chord's notes come highest
                                first
grace note     ``D5:0``         a grace note (no duration of its own) before the next note
rest           ``R:0.5^``       rest, ``:``, duration; ``^`` fermata
=============  ===============  ==============================================================

Pitches are spelled (``C#4`` and ``Db4`` differ), flats written ``b``: ``Bb3``, ``Ebb5``.
Durations are quarter-note lengths: binary values as decimals (``0.125`` = 32nd, ``1.5`` =
dotted quarter), tuplet values as fractions (``1/3`` = triplet eighth).

The header -- the attribute words right after a measure's ``|`` -- comes in the order K, T, P,
L. The first measure must state K and T; later measures state them only when they change.
Inside a measure come the voices in order, and each voice's durations add up to exactly the
measure's length.

Parts, staves and voices. Without ``P`` words every voice is a part of its own with one staff
(a chorale: four parts, four voices), and every measure holds every voice. ``P`` words, one per
part in score order, group the voices into parts and staves: ``| K:0 T:3/4 P:1 P:2/2`` is a
singer (voice 1) over a piano whose upper staff holds voices 2 and 3 and lower staff voices 4
and 5. A staff's first voice is in every measure; its further voices may be absent from a
measure (no ``V`` word, nothing written), except where a note is tied into it. A staff holds as
many voices as its fullest measure writes (the encoder declares no voice that never sounds).

Chords and ties. In ``V1 A4:1~ +E4 +C4~ | V1 A4:2 +F4 +C4 ...`` the A and the C are held into
the next measure under a chord that also sounds F. A tie needs the voice's next event to sound
the tied pitch (a note or chord, not a rest or grace note), so ``~`` may not end a piece.

The grammar is ``grammar.FOLLOWS`` plus the arithmetic of ``grammar.Grammar.violation``; the
parser (which repairs imperfect model output), the validator and the constrained decoder all use
it.

What the encoder keeps of a music21 score: key and time signatures, measure lengths, and per
staff and voice the spelled pitches (each chord note), duration, ties, fermata and grace of every
event. What it drops or changes (and counts, see ``EncodeStats``): a note that overlaps the one
before it in its voice (a voice is a sequence: sources such as MIDI files can overlap notes in one
part), ties and fermatas of grace notes, grace notes after a measure's last note, microtones
(respelled to the nearest semitone), a voice after a staff's first one where it has no note (its
rests, often hidden ones), anything beyond 16 voices, 8 per staff or 3 staves per part; gaps
inside a voice are filled with rests and underfull voices padded. Not in the language: clefs,
dynamics, articulations, slurs, lyrics, repeats, instruments' names and sounds.

Which parts are encoded (``encoder.select_parts``): parts whose name starts with a vocal part word
(Soprano, Alto, Tenor, Bass, their Italian/German forms, and the part books of Renaissance
polyphony: Cantus, Quinto, Sextus, ...), in score order; if no part has such a name, every
part in score order, top to bottom. Parts left out are counted.
"""
from scorelm.language.tokens import (  # noqa: F401  (the package's public names)
    BAR, END, FORMAT_VERSION, HEADER_WORDS, MAX_DENOMINATOR, MAX_QUARTERS, MAX_VOICES, Kind, Token, bar_length,
    INTERVAL_SPELLINGS, format_duration, inverse_interval, key_signature_shift, midi_number, music21_pitch_name,
    parse_token, parts_word, pitch_rank, scale_durations, transpose_pitch, transpose_text, transposed_by)
from scorelm.language.piece import Event, Measure, Piece, paired_measures, split_measures, voice_ranges  # noqa: F401
from scorelm.language.grammar import (  # noqa: F401
    EVENT_KINDS, FOLLOWS, HEADER_KINDS, Grammar, ParseReport, Violation, parse, validate)
from scorelm.language.encoder import (  # noqa: F401
    INSTRUMENTS, SATB_NAMES, VOCAL_PART_WORDS, EncodeStats, encode_score, piece_from_score, select_parts, writable)
from scorelm.language.decoder import part_names, score_from_piece  # noqa: F401
from scorelm.language.reading import read_score  # noqa: F401
