"""Information content and entropy of every note of a piece under a model.

For each note, chord note and rest (one word of the score language) the model gives a
distribution over what may come next. Two measures are taken from it, as IDyOM takes them
(Pearce 2005, section 6.2):

- the **event**: the word itself (pitch, duration, tie and fermata together). Its probability is
  the model's, renormalised over the words the grammar allows at that point (the constrained
  decoder's alphabet: a voice's durations must fill its measure, a tie must be continued by
  its pitch, ...). ``information_content`` is -log2 of it, ``entropy`` the Shannon entropy of
  that distribution, both in bits.
- the **pitch** alone (IDyOM's ``cpitch``, a chromatic pitch: MIDI number): the sum of the
  probabilities of the allowed words of the same kind (a note, or a note added under a chord)
  with that pitch, whatever their spelling, duration, tie and fermata, renormalised over the
  pitches of that kind. Rests have no pitch measures.

What the model is given: everything before the word, structural words included (bar lines,
signatures, voice marks). Structural words are not predicted but given: they are not events,
and no note's measures count them (the model's own bits for them are left out, as IDyOM has no
bar-line events). ``surprisal_bits`` keeps the model's own bits for the word before the
grammar's renormalisation (what train.py's bits per note add up, without the structural words).

Tied notes: the language writes a note tied across a bar line as two words; the second's pitch
is forced by the tie (its pitch information content is 0). IDyOM merges tied notes into one
event; ``continues_tie`` marks the second word so that means per note count the merged note
once (its information content is the sum over its words, by the chain rule).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from scorelm import language, lm
from scorelm.decoding import KINDS, ScoreConstraint, Vocabulary, context_length, decoding_tables
from scorelm.analysis import ppm
from scorelm.language import Kind

LOG2 = math.log(2)
_EVENT_KINDS = [KINDS.index(kind) for kind in (Kind.NOTE, Kind.REST, Kind.CHORD)]

# A predictor: given the ids of a piece (the first is the end-of-text token that begins every
# piece), the natural-log probabilities of every id at every position: row j is the distribution
# of ids[j] given ids[:j] (row 0 is not used).
Predictor = Callable[[list[int]], np.ndarray]


@dataclass
class NoteInformation:
    """The measures of one note, chord note or rest."""
    voice: int  # 0-based
    measure: int  # index into the piece's measures
    offset: Fraction  # from the start of its measure, in quarter notes
    onset: Fraction  # from the start of the piece, in quarter notes
    word: str
    pitch: str | None  # spelled, None for a rest
    duration: Fraction
    continues_tie: bool  # the second word of a tied note (IDyOM merges it with the first)
    probability: float  # of the word, among the words the grammar allows
    information_content: float  # -log2 probability
    entropy: float  # of the distribution over the allowed words
    surprisal_bits: float  # the model's own bits for the word, before renormalising
    alphabet: str  # "grammar", or "events" once the grammar could not follow the piece
    known_word: bool = True  # False: the model has no token for the word (probability: its own)
    cpitch: int | None = None  # MIDI number
    pitch_probability: float | None = None
    pitch_information_content: float | None = None
    pitch_entropy: float | None = None
    pitch_distribution: dict[int, float] | None = None  # MIDI number -> probability
    short_term: bool = False  # the pitch measures combine the model with the short-term model (with_short_term)


def model_predictor(model) -> Predictor:
    """The model's distributions along a piece, in windows of its context (half a window of
    context carried over from one window to the next)."""
    import torch

    window = context_length(model)

    def predict(ids: list[int]) -> np.ndarray:
        out = None
        scored_until, start = 1, 0
        with torch.no_grad():
            while scored_until < len(ids):
                end = min(len(ids), start + window)
                chunk = torch.tensor([ids[start:end]], device=model.device)
                log_probs = torch.log_softmax(model(chunk).logits[0].float(), dim=-1).cpu().numpy()
                if out is None:
                    out = np.zeros((len(ids), log_probs.shape[-1]), dtype=np.float64)
                first = max(scored_until, start + 1)
                out[first:end] = log_probs[first - start - 1:end - start - 1]
                scored_until = end
                start = max(start + 1, end - window // 2)
        return out if out is not None else np.zeros((len(ids), 1))

    return predict


def ngram_predictor(ngram, vocabulary_size: int) -> Predictor:
    """A Kneser-Ney model's distributions along a piece (evaluation.KneserNey), over every id:
    each row computed when first read (a row costs one probability per id, in Python)."""
    class Rows:
        def __init__(self, ids):
            self.ids, self.rows = ids, {}

        def __getitem__(self, where):
            j, columns = where
            if j not in self.rows:
                context = tuple(self.ids[max(0, j - ngram.order + 1):j])
                self.rows[j] = np.log([ngram.probability(context, word) for word in range(vocabulary_size)])
            return self.rows[j][columns]

    return Rows


def _word_token_spans(tokenizer, text: str) -> tuple[list[int], list[list[int]]]:
    """The piece's ids (end-of-text first) and, per word, the positions of its tokens in them."""
    source = lm.model_text(text)
    encoded = tokenizer(source, add_special_tokens=False, return_offsets_mapping=True)
    ids = [tokenizer.eos_token_id] + encoded["input_ids"]
    word_ends, position = [], 0
    for word in text.split():
        position = source.index(word, position) + len(word)
        word_ends.append(position)
    spans: list[list[int]] = [[] for _ in word_ends]
    for index, (_, finish) in enumerate(encoded["offset_mapping"], start=1):
        spans[min(bisect.bisect_left(word_ends, finish), len(spans) - 1)].append(index)
    return ids, spans


def bits(probability: float) -> float:
    """Information content, -log2 of a probability (infinite for 0)."""
    return -math.log2(probability) if probability > 0 else math.inf


def _entropy_bits(probabilities: np.ndarray) -> float:
    p = probabilities[probabilities > 0]
    return float(-(p * np.log2(p)).sum())


def note_information(piece: language.Piece, tokenizer, predictor: Predictor,
                     vocabulary: Vocabulary | None = None,
                     keep_distributions: bool = False) -> list[NoteInformation]:
    """Information content and entropy of every note, chord note and rest of `piece`, in the
    order the text writes them (measure by measure, voice by voice)."""
    vocabulary = vocabulary or Vocabulary.from_tokenizer(tokenizer)
    v = vocabulary
    text = piece.to_text()
    annotated = piece.annotated_words()
    ids, spans = _word_token_spans(tokenizer, text)
    log_probs = predictor(ids)
    constraint = ScoreConstraint(v, decoding_tables(v, piece.num_voices), parts=piece.parts)
    constraint.start(ids[:1])
    events_mask = np.isin(v.kind, _EVENT_KINDS)
    following = True  # the grammar still follows the piece
    measure_starts = [Fraction(0)]
    for measure in piece.measures:
        measure_starts.append(measure_starts[-1] + measure.length)
    held: dict[int, list[str]] = {}  # per voice: the pitches its latest event ties onward
    before: dict[int, list[str]] = {}  # per voice: the pitches the event before it tied onward
    out = []
    for (word, where), positions in zip(annotated, spans):
        token_id = ids[positions[0]] if len(positions) == 1 else None
        whole = token_id is not None and token_id in v.symbol  # one word of the model's alphabet
        token = v.symbol[token_id] if whole else language.parse_token(word)
        if where is None:  # a structural word: given, not predicted
            following = following and _follow(constraint, token_id if whole else None, token)
            continue
        voice, index, offset, event = where
        raw = -sum(log_probs[p, ids[p]] for p in positions) / LOG2
        if following:
            mask = constraint.allowed()
        if following and (mask[token_id] if whole else constraint.grammar.violation(token) is None):
            alphabet = "grammar"
        else:
            following, alphabet, mask = False, "events", events_mask
        allowed = np.flatnonzero(mask)
        row = log_probs[positions[0], :v.size][allowed]
        row = row - np.logaddexp.reduce(row)
        p = np.exp(row)
        if whole and mask[token_id]:
            probability = float(p[np.searchsorted(allowed, token_id)])
        else:  # a word outside the model's alphabet: the model's own (unnormalised) probability
            probability = 2.0 ** -raw
        chord_note = word.startswith("+")
        pitch = word[1:].rstrip("~") if chord_note else event.pitch
        if not chord_note:  # a new event: what the voice's last one tied onward is what this one continues
            before[voice] = held.get(voice, [])
            held[voice] = []
        if pitch is not None and word.endswith("~"):
            held[voice].append(pitch)
        tied_in = pitch is not None and pitch in before.get(voice, [])
        info = NoteInformation(voice, index, offset, measure_starts[index] + offset, word, pitch,
                               event.duration, tied_in, probability, bits(probability), _entropy_bits(p), raw,
                               alphabet)
        if pitch is not None:
            kind = v.kind[token_id] if whole else KINDS.index(Kind.CHORD if chord_note else Kind.NOTE)
            same = (v.kind[allowed] == kind) & (v.midi[allowed] >= 0)
            midis, weights = v.midi[allowed][same], p[same]
            total = weights.sum()
            info.cpitch = language.midi_number(pitch)
            if total > 0:
                mass = np.bincount(midis, weights=weights, minlength=128) / total
                info.pitch_probability = float(mass[info.cpitch])
                info.pitch_information_content = bits(info.pitch_probability)
                info.pitch_entropy = _entropy_bits(mass)
                if keep_distributions:
                    info.pitch_distribution = {int(m): float(mass[m]) for m in np.flatnonzero(mass)}
        info.known_word = whole
        out.append(info)
        following = following and _follow(constraint, token_id if whole else None, token)
    return out


def _follow(constraint: ScoreConstraint, token_id: int | None, token) -> bool:
    """Advance the grammar by one word of the piece (one the model has no token for by its
    parsed Token); False where the grammar cannot follow it."""
    if token_id is not None:
        constraint.advance(token_id)
        return not constraint.finished
    if token is None or constraint.grammar.violation(token) is not None:
        return False
    constraint.grammar.advance(token)
    return True


def with_short_term(notes: list[NoteInformation], alphabet: list[int], bias: float = ppm.PEARCE_BIAS) -> None:
    """Combine each note's pitch measures with IDyOM's short-term model of its voice (a PPM
    model of the notes the voice has sounded so far in this piece; ppm.with_short_term), as
    IDyOM combines its long- and short-term models. The notes must keep their distributions.
    Each voice is a melody: its notes, a tied note once; chord notes under a voice's top note
    keep the model's own measures (IDyOM has no chords). `alphabet`: the pitches the short-term
    model knows (IDyOM: every pitch of the corpus analysed); the note's own pitch is added."""
    for voice in sorted({n.voice for n in notes}):
        melody = [n for n in notes if n.voice == voice and n.cpitch is not None and not n.continues_tie
                  and n.duration > 0 and not n.word.startswith("+") and n.pitch_distribution]
        if not melody:
            continue
        domain = sorted(set(alphabet) | {n.cpitch for n in melody})
        combined = ppm.with_short_term([n.cpitch for n in melody], [n.pitch_distribution for n in melody],
                                       domain, bias)
        for note, distribution in zip(melody, combined):
            note.pitch_distribution = distribution
            note.pitch_probability = distribution.get(note.cpitch, 0.0)
            note.pitch_information_content = bits(note.pitch_probability)
            note.pitch_entropy = _entropy_bits(np.array(list(distribution.values())))
            note.short_term = True


@dataclass
class PieceSummary:
    """Means over a piece's notes, tied notes merged into one (IDyOM's events): rests count in
    the event means, not in the pitch means."""
    notes: int  # sounding notes, a tied note once (chord notes each)
    events: int  # notes and rests, a tied note once
    information_content: float  # mean over events of the merged event's information content
    entropy: float  # mean over events of the entropy at each one's first word
    pitch_information_content: float  # mean over notes
    pitch_entropy: float


def summarize(notes: list[NoteInformation]) -> PieceSummary:
    events = [n for n in notes if not n.continues_tie]
    sounding = [n for n in events if n.pitch is not None]
    event_ic = sum(n.information_content for n in notes)  # a tie's second word adds to its note's
    pitch_ic = sum(n.pitch_information_content or 0.0 for n in notes if n.pitch is not None)

    def mean(total, count):
        return total / count if count else math.nan

    return PieceSummary(len(sounding), len(events), mean(event_ic, len(events)),
                        mean(sum(n.entropy for n in events), len(events)),
                        mean(pitch_ic, len(sounding)),
                        mean(sum(n.pitch_entropy or 0.0 for n in sounding), len(sounding)))
