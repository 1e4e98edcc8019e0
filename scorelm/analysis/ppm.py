"""IDyOM's short-term model and its way of combining models (Pearce 2005, sections 6.2 and 7.3).

The short-term model is a PPM model of one melody's pitches, trained on the melody itself as it
is heard (each note predicted from the notes before it, then added): escape method C,
unbounded order (PPM*: the shortest deterministic context that matches, else the longest that
matches), interpolated smoothing, no update exclusion; Pearce's STMC*I, the short-term model of
his pitch-alone figures (Table 6.6). Exclusion, which PPM applies when blending, is not applied:
with interpolated smoothing each order's estimate is mixed in whole and the full distribution
renormalised, as Pearce's section 6.2.3.4 describes.

Written here rather than taken from a library: no maintained Python package implements PPM*
with Pearce's variants (the R package ``ppm`` does; IDyOM itself is Common Lisp), and the model
is fifty lines over one melody.

Combination (Pearce's equations 6.9 and 7.1): the models' distributions over the pitch alphabet
are averaged, arithmetically or geometrically, each weighted by its relative entropy raised to
the power -bias, so that the more certain model counts more.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np

PEARCE_BIAS = 2  # his Table 6.6: the long- and short-term models' bias with the best mean over eight data sets


def short_term_distributions(pitches: Sequence[int], alphabet: Sequence[int]) -> np.ndarray:
    """Row i: the short-term model's distribution over `alphabet` for note i of the melody, given
    notes 0..i-1 (row 0: uniform). Every pitch of the melody must be in the alphabet."""
    index = {p: k for k, p in enumerate(alphabet)}
    size = len(alphabet)
    out = np.empty((len(pitches), size))
    # match[j]: the length of the longest context that position j (which predicted pitches[j]
    # from pitches[:j]) shares with the note being predicted, j < i.
    match: list[int] = []
    for i in range(len(pitches)):
        if i:
            previous = pitches[i - 1]
            match = [0] + [m + 1 if pitches[j] == previous else 0 for j, m in enumerate(match)]
        out[i] = _interpolated(pitches, match, index, size)
    return out


def _interpolated(pitches: Sequence[int], match: list[int], index: dict[int, int], size: int) -> np.ndarray:
    longest = max(match, default=-1)
    counts: list[Counter] = []  # counts[n]: what followed the order-n context
    for n in range(longest + 1):
        counts.append(Counter(pitches[j] for j, m in enumerate(match) if m >= n))
    deterministic = [n for n, c in enumerate(counts) if len(c) == 1]
    top = deterministic[0] if deterministic else longest
    p = np.full(size, 1.0 / size)  # order -1: every pitch of the alphabet alike
    for n in range(top + 1):
        c = counts[n]
        total, types = sum(c.values()), len(c)
        weight = total / (total + types)  # escape method C
        estimate = np.zeros(size)
        for pitch, count in c.items():
            estimate[index[pitch]] = count / total
        p = weight * estimate + (1 - weight) * p
    return p / p.sum()


def relative_entropy(p: np.ndarray) -> float:
    """H(p) / log2 of the alphabet's size (1 for an alphabet of one)."""
    if len(p) < 2:
        return 1.0
    q = p[p > 0]
    return float(-(q * np.log2(q)).sum()) / math.log2(len(p))


def combine(distributions: Sequence[np.ndarray], bias: float, geometric: bool = False) -> np.ndarray:
    """Pearce's entropy-weighted combination of distributions over one alphabet: weights
    relative_entropy ** -bias, an arithmetic (equation 6.9) or geometric (7.1) mean."""
    weights = np.array([max(relative_entropy(p), 1e-12) ** -bias for p in distributions])
    stacked = np.stack(distributions)
    if geometric:
        with np.errstate(divide="ignore"):
            logs = (weights[:, None] * np.log(stacked)).sum(0) / weights.sum()
        p = np.exp(logs - logs.max())
    else:
        p = (weights[:, None] * stacked).sum(0) / weights.sum()
    return p / p.sum()


def with_short_term(pitches: Sequence[int], long_term: Sequence[dict[int, float]], alphabet: Sequence[int],
                    bias: float) -> list[dict[int, float]]:
    """One melody's pitch distributions (MIDI number -> probability, one per note) combined with
    its short-term model over `alphabet` (ppm.combine, arithmetic): over the pitches either model
    gives probability to."""
    short_term = short_term_distributions(pitches, alphabet)
    where = {p: k for k, p in enumerate(alphabet)}
    out = []
    for ltm, stm in zip(long_term, short_term):
        domain = sorted(set(alphabet) | set(ltm))
        a = np.array([ltm.get(p, 0.0) for p in domain])
        b = np.array([stm[where[p]] if p in where else 0.0 for p in domain])
        combined = combine([a / a.sum(), b], bias)
        out.append({p: float(q) for p, q in zip(domain, combined) if q > 0})
    return out
