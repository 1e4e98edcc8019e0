"""Infilling: what a causal model sees so that it can rewrite a passage that leads into the music
after it. A piece is shown with the music after a span of whole measures moved to its front,
after sentinel words (fill in the middle: Bavarian et al. 2022, "Efficient Training of
Language Models to Fill in the Middle", in their suffix-prefix-middle order):

    <eos> <suffix> after <middle> before <measures:N> span

where before + span + after is the piece and N the span's measures (1 to MAX_SPAN), said where
the span begins, so that the model knows, measure by measure, how far off the music after it
starts, as a composer rewriting bars 5 to 8 knows that bar 9 follows (MMM, Ens & Pasquier 2020,
marks each bar to fill for the same reason). (Said after <suffix> instead, the model could not
tell where the span began, and made nothing of the music after it: docs/results.md.) The span starts at a bar line and ends where the music
after it begins; the piece's close (||) stays with the music after it. The model writes the span
straight on from the music before it, as it writes any continuation (the measure before is the
nearest context, as it is in the piece), having read the music that must follow; it knows the
span is over when the next piece's <eos> comes. (The prefix-suffix-middle order, where the span
comes after the music that follows it, was tried first: with it the one-hour model scored the
spans of the test chorales worse given both sides than given the music before alone, 2.34
against 2.22 bits per note; docs/results.md.)

Training rearranges a share of the training pieces so (train_cfg.json's infill_share; the
validation and test pieces stay as they are, so bits per note still measure continuation), once,
with the run's seed. A model trained so holds the two sentinels in its vocabulary and says so in
its model card (model_folder.ModelCard.infill_share).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

SUFFIX = "<suffix>"
MIDDLE = "<middle>"
MAX_SPAN = 8  # measures moved at most (the scorecard rewrites 2 to 4), and written at once
SPAN_LENGTHS = tuple(f"<measures:{length}>" for length in range(1, MAX_SPAN + 1))
SENTINELS = (SUFFIX, MIDDLE) + SPAN_LENGTHS


@dataclass(frozen=True)
class Sentinels:
    """The sentinels' ids in one tokenizer."""
    suffix: int
    middle: int
    lengths: tuple[int, ...]  # <measures:1> to <measures:MAX_SPAN>

    def length(self, measures: int) -> int:
        """The id saying that a span is `measures` long."""
        if not 1 <= measures <= MAX_SPAN:
            raise ValueError(f"a span of {measures} measures (1 to {MAX_SPAN} can be infilled at once)")
        return self.lengths[measures - 1]


def add_sentinels(tokenizer) -> int:
    """Give the tokenizer the sentinels as special tokens (never split, never matched inside a
    word). Returns how many it did not have."""
    missing = [word for word in SENTINELS if word not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": list(SENTINELS)},
                                     replace_extra_special_tokens=False)
    return len(missing)


def sentinel_ids(tokenizer) -> Sentinels | None:
    """The sentinels' ids, or None for a tokenizer without them all."""
    vocabulary = tokenizer.get_vocab()
    if not all(word in vocabulary for word in SENTINELS):
        return None
    return Sentinels(vocabulary[SUFFIX], vocabulary[MIDDLE], tuple(vocabulary[word] for word in SPAN_LENGTHS))


def measure_starts(ids: list[int], bar_id: int) -> list[int]:
    """Where each measure of a piece's ids begins (its bar line)."""
    return [index for index, token in enumerate(ids) if token == bar_id]


def rearranged(ids: list[int], span: tuple[int, int], bar_id: int, end_id: int, sentinels: Sentinels) -> list[int]:
    """A piece's ids (lm.piece_ids: <eos> first, || last) shown for its measures span[0] to
    span[1] - 1 (0-based, whole measures): <eos> <suffix> after <middle> before <measures:N> span."""
    starts = measure_starts(ids, bar_id)
    first, end = span
    if not 0 <= first < end <= len(starts):
        raise ValueError(f"measures {first}-{end - 1} are not within the piece's {len(starts)}")
    close = ids.index(end_id) if end_id in ids else len(ids)
    cut_in, cut_out = starts[first], starts[end] if end < len(starts) else close
    return (ids[:1] + [sentinels.suffix] + ids[cut_out:] + [sentinels.middle] + ids[1:cut_in]
            + [sentinels.length(end - first)] + ids[cut_in:cut_out])


def restored(ids: list[int], sentinels: Sentinels) -> list[int]:
    """The piece a rearranged sequence shows, in its own order (rearranged undone)."""
    at_suffix, at_middle = ids.index(sentinels.suffix), ids.index(sentinels.middle)
    shown = [token for token in ids[at_middle + 1:] if token not in sentinels.lengths]
    return ids[:at_suffix] + shown + ids[at_suffix + 1:at_middle]


def random_span(measures: int, rng: random.Random) -> tuple[int, int] | None:
    """A span of 1 to MAX_SPAN whole measures that leaves at least one measure outside it
    (anywhere: the opening and the close may be rewritten too), chosen uniformly by length and
    then by place; None for a piece of one measure."""
    if measures < 2:
        return None
    length = rng.randint(1, min(MAX_SPAN, measures - 1))
    first = rng.randint(0, measures - length)
    return first, first + length


def training_pieces(pieces: list[list[int]], share: float, seed: int, bar_id: int, end_id: int,
                    sentinels: Sentinels) -> tuple[list[list[int]], set[int]]:
    """The training pieces' ids with `share` of them (each by a coin of that weight, from `seed`)
    rearranged around a random span. Returns the pieces and the indices of those rearranged
    (to be packed whole: lm.pack_blocks)."""
    rng = random.Random(seed)
    out, moved = [], set()
    for index, ids in enumerate(pieces):
        span = random_span(len(measure_starts(ids, bar_id)), rng) if rng.random() < share else None
        if span is None:
            out.append(ids)
            continue
        out.append(rearranged(ids, span, bar_id, end_id, sentinels))
        moved.add(index)
    return out, moved


def measure_numbers(piece) -> list[int]:
    """Each measure's number as the score shows it: from 1, or from 0 where the piece opens with a
    pickup (a first measure shorter than its time signature), as music21 and notation programs
    number them."""
    from scorelm.language.tokens import bar_length
    first = piece.measures[0] if piece.measures else None
    pickup = first is not None and first.time is not None and first.length < bar_length(first.time)
    return [index if pickup else index + 1 for index in range(len(piece.measures))]


def split_at_measures(text: str, first: int, end: int) -> tuple[str, str, str]:
    """A piece's text cut around its measures first to end - 1 (0-based): the text before them
    (their header included: "" where they open the piece), theirs, and the text after them (from
    the next bar line to the close ||)."""
    words = text.split()
    bars = [index for index, word in enumerate(words) if word == "|"]
    close = words.index("||") if "||" in words else len(words)
    cut_in, cut_out = bars[first], bars[end] if end < len(bars) else close
    return " ".join(words[:cut_in]), " ".join(words[cut_in:cut_out]), " ".join(words[cut_out:])


def span_bits(model, tokenizer, text: str, first: int, end: int) -> tuple[float, float, int]:
    """How much the music after a span tells the model about it: the information (bits) of the
    span's own tokens (measures first to end - 1, 0-based) given the music before it alone (the
    piece as written), and given the music before and after it (the piece rearranged), and the
    span's notes (lm.count_notes). The same tokens are scored both ways."""
    import math

    import torch

    from scorelm import lm
    ids = lm.piece_ids(tokenizer, text)
    bar, close_id = lm.bar_token_id(tokenizer), lm.word_id(tokenizer, "||")
    starts = measure_starts(ids, bar)
    cut_in = starts[first]
    cut_out = starts[end] if end < len(starts) else ids.index(close_id)
    shown = rearranged(ids, (first, end), bar, close_id, sentinel_ids(tokenizer))

    def bits(sequence: list[int], begin: int, stop: int) -> float:
        with torch.no_grad():
            logits = model(torch.tensor([sequence], device=model.device)).logits[0].float()
        log_probabilities = torch.log_softmax(logits[begin - 1:stop - 1], dim=-1)
        targets = torch.tensor(sequence[begin:stop], device=log_probabilities.device)[:, None]
        return -log_probabilities.gather(1, targets).sum().item() / math.log(2)

    alone = bits(ids, cut_in, cut_out)
    both = bits(shown, len(shown) - (cut_out - cut_in), len(shown))  # the span closes the rearranged piece
    _, passage, _ = split_at_measures(text, first, end)
    return both, alone, lm.count_notes([passage])


def measure_headers(passage: str) -> list[list[str]]:
    """Each measure's first words in a passage's text: its bar line and the key, time signature,
    length and layout words (K:, T:, L:, P:) before its first voice."""
    headers: list[list[str]] = []
    in_header = False
    for word in passage.split():
        if word == "|":
            headers.append([word])
            in_header = True
        elif in_header and word[:2] in ("K:", "T:", "L:", "P:"):
            headers[-1].append(word)
        else:
            in_header = False
    return headers


def measure_voices(passage: str) -> list[dict[int, list[str]]]:
    """Each measure of a passage's text, its voices' words by voice number (each from its V word;
    a voice absent from a measure is not there)."""
    measures: list[dict[int, list[str]]] = []
    voice = None
    for word in passage.split():
        if word == "|":
            measures.append({})
            voice = None
        elif word[0] == "V" and word[1:].isdigit():
            voice = int(word[1:])
            measures[-1][voice] = [word]
        elif voice is not None:
            measures[-1][voice].append(word)
    return measures


VOICE_NAMES = {"soprano": 1, "alto": 2, "tenor": 3, "bass": 4}  # a four-voice score's voices


def voice_numbers(names: str, num_voices: int) -> tuple[int, ...]:
    """The voice numbers a comma-separated list names: soprano, alto, tenor and bass in a score of
    four voices, or numbers (1 = the top voice) in any. ValueError for a voice the score lacks."""
    numbers = []
    for name in (part.strip().lower() for part in names.split(",")):
        if name.isdigit() and 1 <= int(name) <= num_voices:
            numbers.append(int(name))
        elif name in VOICE_NAMES and num_voices == 4:
            numbers.append(VOICE_NAMES[name])
        else:
            known = "soprano, alto, tenor, bass or 1-4" if num_voices == 4 else f"1-{num_voices}"
            raise ValueError(f"the score has no voice {name!r} (its {num_voices} voices: {known})")
    return tuple(sorted(set(numbers)))

