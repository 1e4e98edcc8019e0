"""How good is a model, beyond its loss: bits per note beside an n-gram baseline, and musical
statistics of its samples beside the same statistics of Bach's own chorales."""
from __future__ import annotations

import math
from collections import Counter, defaultdict

from scorelm import language

# Textbook SATB ranges (MIDI numbers): soprano C4-G5, alto G3-D5, tenor C3-G4, bass E2-C4.
SATB_RANGES = [(60, 79), (55, 74), (48, 67), (40, 60)]


# ----------------------------------------------------------------------------- n-gram baseline

class KneserNey:
    """Interpolated Kneser-Ney n-gram model over token ids (absolute discount 0.75).

    Written out here because the library options fall short: nltk's KneserNeyInterpolated
    takes seconds per thousand tokens and gives unseen contexts zero probability, and KenLM's
    estimator is a separate C++ binary that pip does not install."""

    def __init__(self, order: int, vocabulary_size: int, discount: float = 0.75):
        self.order, self.vocabulary_size, self.discount = order, vocabulary_size, discount
        self.counts = [defaultdict(Counter) for _ in range(order)]  # n -> context -> next -> count

    def fit(self, stream: list[int]) -> "KneserNey":
        highest = self.counts[self.order - 1]
        for i in range(len(stream)):
            context = tuple(stream[max(0, i - self.order + 1):i])
            if len(context) == self.order - 1:
                highest[context][stream[i]] += 1
        # lower orders count continuations: in how many distinct contexts a word follows
        for n in range(self.order - 1, 0, -1):
            for context, followers in self.counts[n].items():
                for word in followers:
                    self.counts[n - 1][context[1:]][word] += 1
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
    from scorelm import lm
    return [token for text in texts for token in lm.piece_ids(tokenizer, text)]


def ngram_bits_per_note(tokenizer, train: list[str], validation: list[str], test: list[str],
                        orders=(2, 3, 4, 5, 6)) -> dict:
    """Kneser-Ney on the model's own tokens; the order with the best validation score wins."""
    train_stream = token_stream(tokenizer, train)
    validation_stream, test_stream = token_stream(tokenizer, validation), token_stream(tokenizer, test)
    size = len(tokenizer)
    by_order = {order: KneserNey(order, size).fit(train_stream).nll_bits(validation_stream) for order in orders}
    best = min(by_order, key=by_order.get)
    from scorelm.lm import count_notes
    return {"order": best, "validation_bits_per_note": by_order[best] / count_notes(validation),
            "test_bits_per_note": KneserNey(best, size).fit(train_stream).nll_bits(test_stream) / count_notes(test)}


# ----------------------------------------------------------------------------- music statistics

def sonorities(timelines: list[list[tuple]]):
    """(onset, [sounding pitch name or None per voice]) at every moment some voice starts an
    event; `timelines` holds Piece.voice_events for each voice."""
    onsets = sorted({offset for line in timelines for offset, _ in line})
    positions = [0] * len(timelines)
    for onset in onsets:
        sounding = []
        for voice, line in enumerate(timelines):
            while positions[voice] + 1 < len(line) and line[positions[voice] + 1][0] <= onset:
                positions[voice] += 1
            sounding.append(line[positions[voice]][1].pitch)
        yield onset, sounding


def piece_statistics(piece: language.Piece) -> dict:
    """Counts for one piece: parallel fifths and octaves (music21's VoiceLeadingQuartet),
    crossings, out-of-range notes, spacing errors, quarter-note beats, pitch classes relative to
    the key signature's major tonic, and whether it ends on the tonic with a fermata."""
    from music21 import note, voiceLeading
    counts = Counter()
    previous = None
    notes_cache: dict[str, note.Note] = {}

    def as_note(name):
        if name not in notes_cache:
            notes_cache[name] = note.Note(language._music21_pitch_name(name))
        return notes_cache[name]

    timelines = [piece.voice_events(voice) for voice in range(piece.num_voices)]
    for _, sounding in sonorities(timelines):
        counts["slices"] += 1
        midi = [language.midi_number(p) if p else None for p in sounding]
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
                    quartet = voiceLeading.VoiceLeadingQuartet(*(as_note(p) for p in (pair[0], pair[2], pair[1], pair[3])))
                    counts["parallel_fifths"] += bool(quartet.parallelFifth())
                    counts["parallel_octaves"] += bool(quartet.parallelOctave())
        previous = sounding
    tonic = _tonic(piece)
    for voice in range(piece.num_voices):
        low, high = SATB_RANGES[voice] if piece.num_voices == 4 else (0, 127)
        for _, event in timelines[voice]:
            if event.pitch:
                counts["notes"] += 1
                counts["out_of_range"] += not low <= language.midi_number(event.pitch) <= high
    counts["beats"] = float(sum(m.length for m in piece.measures))
    last = [line[-1][1] for line in timelines]
    bass = next((e.pitch for _, e in reversed(timelines[-1]) if e.pitch), None)
    bass_pc = language.midi_number(bass) % 12 if bass else None
    ends_on_tonic = bass_pc in (tonic, (tonic + 9) % 12)  # the major tonic or its relative minor's
    counts["ends_on_tonic_with_fermata"] = int(ends_on_tonic and any(e.fermata for e in last))
    return {"counts": counts, "pitch_classes": pitch_classes_of(piece)}


def _tonic(piece: language.Piece) -> int:
    """Pitch class of the key signature's major tonic (C for none, G for one sharp, ...)."""
    return (7 * (piece.measures[0].key or 0)) % 12


def pitch_classes_of(piece: language.Piece) -> Counter:
    """Notes per pitch class relative to the key signature's major tonic, so keys compare."""
    tonic = _tonic(piece)
    return Counter((language.midi_number(e.pitch) - tonic) % 12
                   for v in range(piece.num_voices) for _, e in piece.voice_events(v) if e.pitch)


def music_statistics(texts: list[str], reference_pitch_classes: Counter | None = None) -> dict:
    """The table's row values for a set of pieces (raw model output is repaired first; the
    share of measures that needed no repair is one of the values)."""
    totals, pitch_classes = Counter(), Counter()
    measures = repaired_measures = pieces = 0
    for text in texts:
        parsed, report = language.parse(text)
        if not parsed:
            continue
        piece = parsed[0]
        pieces += 1
        measures += len(piece.measures)
        repaired_measures += len(report.measures)
        result = piece_statistics(piece)
        totals.update(result["counts"])
        pitch_classes.update(result["pitch_classes"])
    beats = max(totals["beats"], 1)
    statistics = {
        "pieces": pieces,
        "parallel_fifths_per_100_beats": 100 * totals["parallel_fifths"] / beats,
        "parallel_octaves_per_100_beats": 100 * totals["parallel_octaves"] / beats,
        "voice_crossings_per_100_beats": 100 * totals["voice_crossings"] / beats,
        "spacing_errors_per_100_beats": 100 * totals["spacing_errors"] / beats,
        "notes_out_of_range_percent": 100 * totals["out_of_range"] / max(totals["notes"], 1),
        "ending_on_tonic_with_fermata_percent": 100 * totals["ends_on_tonic_with_fermata"] / max(pieces, 1),
        "valid_measures_percent": 100 * (1 - repaired_measures / max(measures, 1)),
    }
    if reference_pitch_classes is not None:
        statistics["pitch_class_distance"] = histogram_distance(pitch_classes, reference_pitch_classes)
    statistics["_pitch_classes"] = pitch_classes
    return statistics


def histogram_distance(a: Counter, b: Counter) -> float:
    """Total variation distance between two pitch-class distributions (0 same, 1 disjoint)."""
    total_a, total_b = max(sum(a.values()), 1), max(sum(b.values()), 1)
    return 0.5 * sum(abs(a[k] / total_a - b[k] / total_b) for k in range(12))


def corpus_pitch_classes(texts: list[str]) -> Counter:
    classes = Counter()
    for text in texts:
        pieces, _ = language.parse(text)
        if pieces:
            classes.update(pitch_classes_of(pieces[0]))
    return classes


ROWS = [
    ("bits per note (test)", "bits_per_note"),
    ("parallel fifths / 100 beats", "parallel_fifths_per_100_beats"),
    ("parallel octaves / 100 beats", "parallel_octaves_per_100_beats"),
    ("voice crossings / 100 beats", "voice_crossings_per_100_beats"),
    ("spacing errors / 100 beats", "spacing_errors_per_100_beats"),
    ("notes out of range %", "notes_out_of_range_percent"),
    ("pitch-class distance to training", "pitch_class_distance"),
    ("end on tonic with fermata %", "ending_on_tonic_with_fermata_percent"),
    ("valid measures %", "valid_measures_percent"),
]


def format_table(columns: dict[str, dict]) -> str:
    names = list(columns)
    lines = [f"{'':34s}" + "".join(f"{n:>12s}" for n in names)]
    for label, key in ROWS:
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
    figure, axes = plt.subplots(3, 3, figsize=(11, 8))
    colours = {"model": "#3b6fb6", "n-gram": "#999999", "Bach": "#c8553d"}
    for axis, (label, key) in zip(axes.flat, ROWS):
        names = [n for n in columns if isinstance(columns[n].get(key), (int, float))]
        axis.bar(names, [columns[n][key] for n in names], color=[colours.get(n, "#555555") for n in names])
        axis.set_title(label, fontsize=10)
        axis.tick_params(labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
