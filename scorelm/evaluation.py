"""How good is a model, beyond its loss: bits per note beside an n-gram baseline, and musical
statistics of its samples beside the same statistics of Bach's own chorales."""
from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from fractions import Fraction

from scorelm import files, language
from scorelm.cli import fork_map
from scorelm.decoding import rules
from scorelm.decoding.rules import SATB_RANGES


# ----------------------------------------------------------------------------- n-gram baseline

class KneserNey:
    """Interpolated Kneser-Ney n-gram model over token ids (absolute discount 0.75).

    Written out here because the library options fall short: nltk's KneserNeyInterpolated
    takes seconds per thousand tokens and gives unseen contexts zero probability, and KenLM's
    estimator is a separate C++ binary that pip does not install."""

    def __init__(self, order: int, vocabulary_size: int, discount: float = 0.75):
        self.order, self.vocabulary_size, self.discount = order, vocabulary_size, discount
        self.counts = [defaultdict(dict) for _ in range(order)]  # n -> context -> next -> count

    def fit(self, stream: list[int]) -> "KneserNey":
        # the n-grams counted at C speed as whole tuples (the stream zipped with itself shifted),
        # then split into context and next token once each, into plain dicts (a Counter per
        # context was two thirds of the time): the same counts in a third of the time
        grams = Counter(zip(*(stream[shift:] for shift in range(self.order))))
        for n in range(self.order - 1, -1, -1):
            level = self.counts[n]
            for gram, count in grams.items():
                level[gram[:-1]][gram[-1]] = count
            # lower orders count continuations: in how many distinct contexts a word follows
            grams = Counter(gram[1:] for gram in grams)
        self.totals = [{c: sum(f.values()) for c, f in level.items()} for level in self.counts]
        return self

    def probability(self, context: tuple, word: int) -> float:
        probability = 1.0 / self.vocabulary_size
        for n in range(0, self.order):
            if n > len(context):
                break
            key = context[len(context) - n:] if n else ()
            followers = self.counts[n].get(key)
            if not followers:
                continue
            total = self.totals[n][key]
            probability = (max(followers.get(word, 0) - self.discount, 0) / total
                           + self.discount * len(followers) / total * probability)
        return probability

    def nll_bits(self, stream: list[int]) -> float:
        """Total bits for every token of `stream` after the first, given what precedes it."""
        return -sum(math.log2(self.probability(tuple(stream[max(0, i - self.order + 1):i]), stream[i]))
                    for i in range(1, len(stream)))


def token_stream(tokenizer, texts: list[str]) -> list[int]:
    """lm.piece_ids of every text, one after another (the texts tokenized in one call)."""
    from scorelm import lm
    if not texts:
        return []
    rows = tokenizer([lm.model_text(text) for text in texts], add_special_tokens=False)["input_ids"]
    return [token for row in rows for token in [tokenizer.eos_token_id] + row]


def ngram_bits_per_note(tokenizer, train: list[str], validation: list[str], test: list[str],
                        orders=(2, 3, 4, 5, 6)) -> dict:
    """Kneser-Ney on the model's own tokens; the order with the best validation score wins."""
    train_stream = token_stream(tokenizer, train)
    validation_stream, test_stream = token_stream(tokenizer, validation), token_stream(tokenizer, test)
    # each order fitted once, on its own core, and scored on both splits; chosen on validation alone
    longest_first = sorted(orders, reverse=True)  # the dearest fits start first: the cores finish together
    scored = dict(zip(longest_first, fork_map(
        functools.partial(_ngram_bits, train_stream, validation_stream, test_stream, len(tokenizer)), longest_first)))
    by_order = {order: scored[order] for order in orders}
    best = min(by_order, key=lambda order: by_order[order][0])
    from scorelm.lm import count_notes
    return {"order": best, "validation_bits_per_note": by_order[best][0] / count_notes(validation),
            "test_bits_per_note": by_order[best][1] / count_notes(test)}


def _ngram_bits(train: list[int], validation: list[int], test: list[int], size: int, order: int) -> tuple[float, float]:
    model = KneserNey(order, size).fit(train)
    return model.nll_bits(validation), model.nll_bits(test)


# ----------------------------------------------------------------------------- music statistics

def sonorities(timelines: list[list[tuple]], events: bool = False):
    """(onset, [sounding pitch name or None per voice]) at every moment some voice starts an
    event; `timelines` holds Piece.voice_events for each voice. A chord's top note stands for it;
    events=True gives the sounding events themselves (None for a voice with none yet)."""
    onsets = sorted({offset for line in timelines for offset, _ in line})
    positions = [0] * len(timelines)
    for onset in onsets:
        sounding = []
        for voice, line in enumerate(timelines):
            while positions[voice] + 1 < len(line) and line[positions[voice] + 1][0] <= onset:
                positions[voice] += 1
            event = line[positions[voice]][1] if line else None
            sounding.append(event if events else event.pitch if event else None)
        yield onset, sounding


def piece_statistics(piece: language.Piece) -> dict:
    """_piece_counts, with the chords counted by quality (chord_quality)."""
    statistics = _piece_counts(piece)
    statistics["chords"] = chord_qualities(statistics["chords"])
    return statistics


def chord_qualities(sets: Counter) -> Counter:
    """Sonorities counted by pitch-class set, counted by chord_quality instead (in the order the
    sets come)."""
    qualities = Counter()
    for pitch_classes, count in sets.items():
        qualities[chord_quality(pitch_classes)] += count
    return qualities


def _piece_counts(piece: language.Piece) -> dict:
    """Counts for one piece: parallel fifths and octaves (music21's VoiceLeadingQuartet),
    crossings, out-of-range notes, spacing errors, chromatic clashes (onsets where two voices
    sound one letter with two accidentals, A against A flat), quarter-note beats, how it ends,
    and the histograms the distribution distances compare (pitch classes relative to the key
    signature's major tonic, melodic intervals per voice, sonorities by pitch-class set, note values)."""
    counts = Counter()
    previous = None
    timelines = [piece.voice_events(voice) for voice in range(piece.num_voices)]
    chords = Counter()
    for _, events in sonorities(timelines, events=True):
        sounding = [event.pitch if event else None for event in events]
        counts["slices"] += 1
        midi = [language.midi_number(p) if p else None for p in sounding]
        every = {language.midi_number(p) % 12 for event in events if event for p in event.pitches}  # chords' notes too
        chords[frozenset(every)] += 1  # the chord's quality once per set (chord_qualities): it is dear
        letters = {}  # letter -> how the voices spell it (A and A flat at once: a clash)
        for name in sounding:
            if name:
                letters.setdefault(name[0], set()).add(rules.spelled_name(name))
        counts["chromatic_clashes"] += any(len(spellings) > 1 for spellings in letters.values())
        for upper in range(len(midi) - 1):
            lower = upper + 1
            if midi[upper] is not None and midi[lower] is not None:
                if midi[lower] > midi[upper]:
                    counts["voice_crossings"] += 1
                if upper < 2 and midi[upper] - midi[lower] > 12:  # soprano-alto, alto-tenor
                    counts["spacing_errors"] += 1
        if previous is not None:
            for upper in range(len(midi)):
                for lower in range(upper + 1, len(midi)):
                    pair = (previous[upper], previous[lower], sounding[upper], sounding[lower])
                    if None in pair or (pair[0] == pair[2] and pair[1] == pair[3]):
                        continue
                    fifths, octaves = parallels(pair)
                    counts["parallel_fifths"] += fifths
                    counts["parallel_octaves"] += octaves
        previous = sounding
    intervals, rhythm = Counter(), Counter()
    for voice in range(piece.num_voices):
        low, high = SATB_RANGES[voice] if piece.num_voices == 4 else (0, 127)
        last = None
        for _, event in timelines[voice]:
            if event.grace:
                continue
            rhythm[language.format_duration(event.duration)] += 1
            if event.pitch:
                counts["notes"] += 1
                number = language.midi_number(event.pitch)
                counts["out_of_range"] += not low <= number <= high
                if last is not None:
                    intervals[(voice_role(voice, piece.num_voices), max(-13, min(13, number - last)))] += 1
                last = number
    counts["beats"] = float(sum(m.length for m in piece.measures))
    on_tonic, with_fermatas = ending(piece)
    counts["ends_on_tonic"] = int(on_tonic)
    counts["ends_with_third"] = int(final_chord_has_third(piece))
    counts["ends_with_fermata_in_every_voice"] = int(with_fermatas)
    counts["ends_on_tonic_with_fermata"] = int(on_tonic and with_fermatas)
    # of those closes, the ones on the signature's own major or minor tonic: not a church mode's
    # final (which the tonic test must accept for Bach's modal melodies), nor the analysed key
    bass = last_notes(timelines)[-1]
    counts["ends_on_signature_tonic"] = int(on_tonic and bass is not None and rules.spelled_name(bass.pitch)
                                            in rules.tonic_names(piece.measures[0].key or 0))
    return {"counts": counts, "pitch_classes": pitch_classes_of(piece), "intervals": intervals,
            "chords": chords, "rhythm": rhythm}


CHORD_QUALITIES = ("major", "minor", "diminished", "seventh", "other")


_QUALITIES: dict[frozenset, str] = {}  # chord_quality's answers so far, in this process


@functools.lru_cache(maxsize=None)
def parallels(pair: tuple[str, str, str, str]) -> tuple[bool, bool]:
    """Whether two voices moving (upper before, lower before, upper after, lower after: pitch
    names) make parallel fifths and octaves, by music21's VoiceLeadingQuartet (remembered: one
    costs 0.4 ms, and the same four notes recur throughout a corpus)."""
    from music21 import note, voiceLeading
    upper_before, lower_before, upper_after, lower_after = (note.Note(language.music21_pitch_name(p)) for p in pair)
    quartet = voiceLeading.VoiceLeadingQuartet(upper_before, upper_after, lower_before, lower_after)
    return bool(quartet.parallelFifth()), bool(quartet.parallelOctave())


def chord_quality(pitch_classes: frozenset) -> str:
    """major, minor or diminished triad, a seventh chord (any quality), or other (incomplete
    chords, unisons, non-tertian sonorities), by music21's chord classification (remembered:
    music21 tries every spelling of the pitch classes, about 6 ms a set)."""
    if pitch_classes not in _QUALITIES:
        _QUALITIES[pitch_classes] = _music21_chord_quality(pitch_classes)
    return _QUALITIES[pitch_classes]


def _music21_chord_quality(pitch_classes: frozenset) -> str:
    from music21 import chord
    if len(pitch_classes) < 3:
        return "other"
    sonority = chord.Chord(sorted(pitch_classes))
    if sonority.isSeventh():
        return "seventh"
    if sonority.isMajorTriad():
        return "major"
    if sonority.isMinorTriad():
        return "minor"
    if sonority.isDiminishedTriad():
        return "diminished"
    return "other"


def ending(piece: language.Piece) -> tuple[bool, bool]:
    """(ends on the tonic, has a fermata in every voice where the soprano's last note begins).

    The final chord is each voice's last note; it ends on the tonic when it is a major or minor
    triad (or open fifth) in root position whose root, as spelled, is a tonic of the piece (a
    C-flat is no B): the key music21's
    Krumhansl-Schmuckler analysis finds, either key of the key signature (major or relative
    minor: Picardy thirds and chorales that modulate to the relative key and back), or the
    melody's own last note where it is the final of a church mode (Dorian, Phrygian, Mixolydian:
    a chorale in E Phrygian ends on E although its signature says C or A minor)."""
    timelines = [piece.voice_events(voice) for voice in range(piece.num_voices)]
    last = last_notes(timelines)
    # the soprano's last note, not a rest after it (bwv261 closes B4:2^ R:1, every voice resting)
    soprano_onset, soprano_last = next(((o, e) for o, e in reversed(timelines[0]) if e.pitch), timelines[0][-1])
    fermatas = bool(soprano_last.fermata) and all(
        any(onset <= soprano_onset < onset + e.duration and e.fermata for onset, e in line) for line in timelines[1:])
    if any(event is None for event in last):
        return False, fermatas
    pcs = [language.midi_number(e.pitch) % 12 for e in last]
    bass, melody = pcs[-1], pcs[0]
    if not rules.consonant_root_position(bass, pcs[:-1]):
        return False, fermatas
    key = piece.measures[0].key or 0
    names = [rules.spelled_name(e.pitch) for e in last]
    tonics = set(rules.tonic_names(key))
    if melody in rules.modal_finals(key):
        tonics.add(names[0])
    if names[-1] not in tonics:
        tonics.add(rules.analysed_tonic(piece))
    return names[-1] in tonics, fermatas


def last_notes(timelines: list[list[tuple]]) -> list:
    """The last chord: each voice's last sounding note (None for a voice with none)."""
    return [next((e for _, e in reversed(line) if e.pitch), None) for line in timelines]


def final_chord_has_third(piece: language.Piece) -> bool:
    """Whether a voice above the bass sounds the third of the last chord (each voice's last note;
    three or more voices): a complete close, no open fifth."""
    last = last_notes([piece.voice_events(voice) for voice in range(piece.num_voices)])
    if len(last) < 3 or any(event is None for event in last):
        return False
    pcs = [language.midi_number(e.pitch) % 12 for e in last]
    return rules.has_third(pcs[-1], pcs[:-1])


def _tonic(piece: language.Piece) -> int:
    """Pitch class of the key signature's major tonic (C for none, G for one sharp, ...)."""
    return (7 * (piece.measures[0].key or 0)) % 12


def pitch_classes_of(piece: language.Piece) -> Counter:
    """Notes per pitch class relative to the key signature's major tonic, so keys compare."""
    tonic = _tonic(piece)
    return Counter((language.midi_number(e.pitch) - tonic) % 12
                   for v in range(piece.num_voices) for _, e in piece.voice_events(v) if e.pitch)


def music_statistics(texts: list[str], reference_pitch_classes: Counter | None = None,
                     reference: dict | None = None) -> dict:
    """The table's row values for a set of pieces (raw model output is repaired first; the
    share of measures that needed no repair is one of the values). `reference`: another set's
    statistics (Bach's), to which the distribution distances are measured."""
    totals, pitch_classes = Counter(), Counter()
    intervals, chords, rhythm = Counter(), Counter(), Counter()
    measures = repaired_measures = pieces = 0
    results = [result for result in fork_map(_text_statistics, texts, chunksize=8) if result is not None]  # every core
    # each sonority's quality once, the new ones on every core too
    new = sorted({s for result in results for s in result["chords"] if s not in _QUALITIES}, key=sorted)
    _QUALITIES.update(zip(new, fork_map(_music21_chord_quality, new, chunksize=16)))
    for result in results:
        result["chords"] = chord_qualities(result["chords"])
        pieces += 1
        measures += result["measures"]
        repaired_measures += result["repaired_measures"]
        totals.update(result["counts"])
        pitch_classes.update(result["pitch_classes"])
        intervals.update(result["intervals"])
        chords.update(result["chords"])
        rhythm.update(result["rhythm"])
    beats = max(totals["beats"], 1)
    statistics = {
        "pieces": pieces,
        "parallel_fifths_per_100_beats": 100 * totals["parallel_fifths"] / beats,
        "parallel_octaves_per_100_beats": 100 * totals["parallel_octaves"] / beats,
        "voice_crossings_per_100_beats": 100 * totals["voice_crossings"] / beats,
        "spacing_errors_per_100_beats": 100 * totals["spacing_errors"] / beats,
        "chromatic_clashes_per_100_beats": 100 * totals["chromatic_clashes"] / beats,
        "notes_out_of_range_percent": 100 * totals["out_of_range"] / max(totals["notes"], 1),
        "ending_on_tonic_percent": 100 * totals["ends_on_tonic"] / max(pieces, 1),
        "ending_on_tonic_with_fermata_percent": 100 * totals["ends_on_tonic_with_fermata"] / max(pieces, 1),
        "final_chord_third_percent": 100 * totals["ends_with_third"] / max(pieces, 1),
        "ending_on_signature_tonic_percent": 100 * totals["ends_on_signature_tonic"] / max(pieces, 1),
        "valid_measures_percent": 100 * (1 - repaired_measures / max(measures, 1)),
    }
    if reference_pitch_classes is not None:
        statistics["pitch_class_distance"] = histogram_distance(pitch_classes, reference_pitch_classes)
    statistics["_histograms"] = {"pitch_classes": pitch_classes, "intervals": intervals, "chords": chords,
                                 "rhythm": rhythm}
    if reference is not None:
        statistics.update(distribution_distances(statistics, reference))
    return statistics


def _text_statistics(text: str) -> dict | None:
    """piece_statistics of a text's first piece (repaired), with its measures and how many of
    them needed a repair; None for a text without music."""
    parsed, report = language.parse(text)
    if not parsed:
        return None
    return {**_piece_counts(parsed[0]), "measures": len(parsed[0].measures),
            "repaired_measures": len(report.measures)}


def voice_role(voice: int, num_voices: int) -> str:
    """What a voice is, so that pieces with different numbers of voices compare like with like:
    the top voice is the soprano, the lowest the bass, and those between are counted from the
    top (in four voices inner 1 is the alto, inner 2 the tenor)."""
    if voice == 0:
        return "soprano"
    return "bass" if voice == num_voices - 1 else f"inner {voice}"


def distribution_distances(statistics: dict, reference: dict) -> dict:
    """Total variation distances to the reference set's distributions: melodic intervals (per
    voice, averaged over the voices both sets have), chord qualities per onset, and note values.
    A voice only one set has is left out of the intervals' average rather than counted as
    wholly unlike: two of the 41 validation chorales have five voices, and a harmonization
    writes four, so counting Bach's fifth voice (or matching his second tenor against a bass)
    would add the same large constant to every setting's distance and hide the differences
    between them."""
    ours, theirs = statistics["_histograms"], reference["_histograms"]
    their_voices, our_voices = {voice for voice, _ in theirs["intervals"]}, {voice for voice, _ in ours["intervals"]}
    voices = sorted(their_voices & our_voices or their_voices | our_voices)
    per_voice = []
    for voice in voices:
        a = Counter({step: n for (v, step), n in ours["intervals"].items() if v == voice})
        b = Counter({step: n for (v, step), n in theirs["intervals"].items() if v == voice})
        per_voice.append(histogram_distance(a, b))
    return {"interval_distance": sum(per_voice) / max(len(per_voice), 1),
            "chord_quality_distance": histogram_distance(ours["chords"], theirs["chords"]),
            "rhythm_distance": histogram_distance(ours["rhythm"], theirs["rhythm"])}


def histogram_distance(a: Counter, b: Counter) -> float:
    """Total variation distance between two distributions given as counts (0 same, 1 disjoint)."""
    total_a, total_b = max(sum(a.values()), 1), max(sum(b.values()), 1)
    # summed in a fixed order: a set of strings iterates in an order that changes from run to run
    # (hash randomization), and with it the sum's last bit
    return 0.5 * sum(abs(a[k] / total_a - b[k] / total_b) for k in sorted(set(a) | set(b), key=repr))


def corpus_pitch_classes(texts: list[str]) -> Counter:
    """pitch_classes_of every text's first piece, added up (the texts on every core)."""
    classes = Counter()
    for counts in fork_map(_text_pitch_classes, texts, chunksize=64):
        classes.update(counts)
    return classes


def _text_pitch_classes(text: str) -> Counter:
    pieces, _ = language.parse(text)
    return pitch_classes_of(pieces[0]) if pieces else Counter()


HARMONIZED_ROLES = {"alto": "inner 1", "tenor": "inner 2", "bass": "bass"}


def agreement(harmonized: list[str], originals: list[str], roles: dict[str, str] | None = None) -> dict:
    """How much of the time each lower voice of a harmonization sounds the very pitch Bach's
    does (shares of the pieces' total duration; rests count as a pitch). Voices are matched by
    what they are (voice_role): a harmonization's bass against Bach's lowest voice also where
    he wrote five. `roles`: the voices compared, name -> voice_role (default: alto, tenor and
    bass)."""
    roles = HARMONIZED_ROLES if roles is None else roles
    same, total = Counter(), Counter()
    for ours_text, bach_text in zip(harmonized, originals):
        ours, bach = language.parse(ours_text)[0][0], language.parse(bach_text)[0][0]
        for name, role in roles.items():
            voices = [next((v for v in range(p.num_voices) if voice_role(v, p.num_voices) == role), None)
                      for p in (ours, bach)]
            if None in voices:
                continue
            a, b = ours.voice_events(voices[0]), bach.voice_events(voices[1])
            cuts = sorted({o for o, _ in a} | {o for o, _ in b} |
                          {a[-1][0] + a[-1][1].duration, b[-1][0] + b[-1][1].duration})
            i = j = 0
            for start, end in zip(cuts, cuts[1:]):
                while i + 1 < len(a) and a[i + 1][0] <= start:
                    i += 1
                while j + 1 < len(b) and b[j + 1][0] <= start:
                    j += 1
                total[name] += end - start
                same[name] += (end - start) * (a[i][1].pitch == b[j][1].pitch)
    return {f"matches_bach_{name}_percent": float(100 * Fraction(same[name]) / max(total[name], 1)) for name in roles}


ROWS = [
    ("bits per note", "bits_per_note"),
    ("parallel fifths / 100 beats", "parallel_fifths_per_100_beats"),
    ("parallel octaves / 100 beats", "parallel_octaves_per_100_beats"),
    ("voice crossings / 100 beats", "voice_crossings_per_100_beats"),
    ("spacing errors / 100 beats", "spacing_errors_per_100_beats"),
    ("chromatic clashes / 100 beats", "chromatic_clashes_per_100_beats"),
    ("notes out of range %", "notes_out_of_range_percent"),
    ("ends on the tonic %", "ending_on_tonic_percent"),
    ("... with a fermata in every voice %", "ending_on_tonic_with_fermata_percent"),
    ("last chord sounds its third %", "final_chord_third_percent"),
    ("... on the signature's major or minor tonic %", "ending_on_signature_tonic_percent"),
    ("pitch-class distance to training", "pitch_class_distance"),
    ("melodic-interval distance to Bach", "interval_distance"),
    ("chord-quality distance to Bach", "chord_quality_distance"),
    ("rhythm distance to Bach", "rhythm_distance"),
    ("soprano = Bach's note, % of time", "matches_bach_soprano_percent"),
    ("alto = Bach's note, % of time", "matches_bach_alto_percent"),
    ("tenor = Bach's note, % of time", "matches_bach_tenor_percent"),
    ("bass = Bach's note, % of time", "matches_bach_bass_percent"),
    ("valid measures %", "valid_measures_percent"),
    ("span: valid pieces %", "valid_pieces_percent"),
    ("span: outside kept %", "kept_outside_percent"),
    ("span bits per note, both sides", "span_bits_both_sides"),
    ("span bits per note, before alone", "span_bits_before_alone"),
]


def shown_rows(columns: dict[str, dict]) -> list[tuple[str, str]]:
    """The rows some column has a number for (a model that cannot infill has no span rows)."""
    return [(label, key) for label, key in ROWS
            if any(isinstance(column.get(key), (int, float)) for column in columns.values())]


def format_table(columns: dict[str, dict]) -> str:
    names = list(columns)
    lines = [f"{'':34s}" + "".join(f"{n:>12s}" for n in names)]
    for label, key in shown_rows(columns):
        cells = []
        for name in names:
            value = columns[name].get(key)
            cells.append(f"{value:12.3f}" if isinstance(value, (int, float)) else f"{'-':>12s}")
        lines.append(f"{label:34s}" + "".join(cells))
    return "\n".join(lines)


def plot_table(columns: dict[str, dict], path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown = shown_rows(columns)
    rows = -(-len(shown) // 4)
    figure, axes = plt.subplots(rows, 4, figsize=(14, 2.5 * rows))
    for axis in axes.flat[len(shown):]:
        axis.set_visible(False)
    colours = {"samples": "#3b6fb6", "harmonized": "#6a9f58", "n-gram": "#999999", "Bach": "#c8553d",
               "infilled": "#8a5fb0", "infilled inner": "#b07fd0", "Bach spans": "#e0907d"}
    for axis, (label, key) in zip(axes.flat, shown):
        names = [n for n in columns if isinstance(columns[n].get(key), (int, float))]
        axis.bar(names, [columns[n][key] for n in names], color=[colours.get(n, "#555555") for n in names])
        axis.set_title(label, fontsize=10)
        axis.tick_params(labelsize=8)
    figure.tight_layout()
    with files.replacing(path) as temporary:
        figure.savefig(temporary, dpi=110)
    plt.close(figure)
