"""Particle sampling (sequential Monte Carlo) under the voice-leading rules: each piece written
as the survivor of several sequences sampled side by side and resampled by how much of the
model's probability the rules leave them (see sample_particles)."""
from __future__ import annotations

import numpy as np

from scorelm.decoding.constraint import GrammarLogitsProcessor

# From this many rows the KV cache is preallocated (transformers' StaticCache): a DynamicCache
# copies every row's keys and values at each step, which at 64 rows was half of a harmonization
# batch's time on 2 cores (10.2 s against 6.1 s for 12 melodies, bench/bench_harmonize.py); for a
# few rows attending over the whole preallocated length costs more than the copies (8.1 s against
# 8.9 s one melody at a time). The same samples either way (the golden test).
STATIC_CACHE_ROWS = 16
GIVE_UP_NATS = 4.0  # a particle's weight when hard mode gives up a rule: as soft mode's penalty
RESAMPLE_BELOW = 0.5  # resample a piece's particles when their effective number falls below this share


def sample_particles(model, input_ids, processor: GrammarLogitsProcessor, particles: int, max_new_tokens: int,
                     stops: list[int], pad_id: int, *, temperature: float, top_k: int, top_p: float,
                     progress=None):
    """Sequential Monte Carlo sampling under the rules: the pieces the model would write, given
    that they keep the rules, rather than the pieces it writes when each note that breaks a rule
    is struck out as it comes.

    Striking notes out one at a time is greedy: the tenor is written before the bass, so when
    every step the bass would take makes parallels with it, the bass must leap where Bach would
    have written another tenor note. Here each piece is `particles` sequences sampled side by
    side, each weighed at every step by the share of the model's probability that the grammar's
    choices keep under the rules (a harmonization's given melody notes weigh nothing: sequences
    are compared at equal lengths, and the melody's own probability would favour those whose lower
    voices had written more notes by then, which made busy eighth-note basses). When a
    piece's weights grow uneven, its sequences are resampled by weight (systematic resampling,
    copying the KV cache's rows and the grammar states), so that sequences in a corner give way
    to sequences that are not; at the end one is drawn by weight. transformers' generate() has
    no hook to reorder its rows in mid-run, hence this loop; its sampling warpers are the
    library's. Returns the chosen rows (prompt included) and their constraints. progress: a
    started progress.Progress, or None."""
    import torch
    from transformers import (DynamicCache, LogitsProcessorList, StaticCache, TemperatureLogitsWarper, TopKLogitsWarper,
                              TopPLogitsWarper)

    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    rows = input_ids.shape[0]
    pieces = rows // particles
    device = input_ids.device
    log_weights = torch.zeros(rows, dtype=torch.float64, device=device)
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    stop_tensor = torch.tensor(stops or [-1], device=device)
    cache = StaticCache(model.config, max_cache_len=input_ids.shape[1] + max_new_tokens) \
        if rows >= STATIC_CACHE_ROWS else DynamicCache()
    step_input = input_ids
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(input_ids=step_input, cache=cache, use_cache=True).logits[:, -1, :].float()
        scores = processor(input_ids, logits)
        given_up = torch.tensor([c.rules_given_up for c in processor.constraints], dtype=torch.float64, device=device)
        step = step_log_weights(logits, scores, processor.grammar_allowed, temperature) - GIVE_UP_NATS * given_up
        log_weights += torch.where(unfinished & torch.isfinite(step), step, 0.0)
        order = resampled(log_weights, pieces, particles)
        if order is not None:
            input_ids, scores, unfinished = input_ids[order], scores[order], unfinished[order]
            reorder_rows(cache, order)
            processor.constraints = copies(processor.constraints, order.tolist())
            log_weights = log_weights.view(pieces, particles).logsumexp(1, keepdim=True).sub(
                np.log(particles)).expand(pieces, particles).reshape(rows).clone()
        probabilities = torch.softmax(warpers(input_ids, scores), dim=-1)
        next_tokens = torch.multinomial(probabilities, 1).squeeze(1)
        next_tokens = torch.where(unfinished, next_tokens, pad_id)
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=1)
        unfinished &= ~torch.isin(next_tokens, stop_tensor)
        if progress is not None:
            progress.put(next_tokens.cpu())
        if not unfinished.any():
            break
        step_input = next_tokens[:, None]
    if progress is not None:
        progress.end()
    chosen = torch.multinomial(torch.softmax(log_weights.view(pieces, particles), dim=1), 1).squeeze(1)
    chosen += torch.arange(pieces, device=device) * particles
    return input_ids[chosen], [processor.constraints[i] for i in chosen.tolist()]


def reorder_rows(cache, order) -> None:
    """cache.reorder_cache(order) (row i takes row order[i]'s keys and values), copying only the
    rows that change: a resampling moves one piece's particles or a few, and transformers'
    index_select copied every row of the preallocated cache each time (1.7 s of a scorecard's
    22 s of harmonizations on 2 cores)."""
    import torch
    moved = torch.nonzero(order != torch.arange(len(order), device=order.device)).squeeze(1)
    if len(moved):
        source = order[moved]
        for layer in cache.layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys[moved] = layer.keys[source]
                layer.values[moved] = layer.values[source]


def step_log_weights(logits, scores, grammar_allowed: np.ndarray, temperature: float):
    """Each row's log weight for one step: the tempered probability mass of what may come (the
    rules' and forced tokens' mask in `scores`, -inf where forbidden, soft penalties taken off)
    over the mass of what the grammar alone allows (`grammar_allowed`, per row and token id). It
    does not depend on the token drawn, so a piece's particles are resampled before drawing it."""
    import torch
    width = logits.shape[1]
    if grammar_allowed.shape[1] < width:  # a vocabulary padded beyond the tokenizer's
        grammar_allowed = np.pad(grammar_allowed, ((0, 0), (0, width - grammar_allowed.shape[1])))
    grammar = torch.from_numpy(grammar_allowed[:, :width]).to(logits.device)
    kept = torch.logsumexp(scores.float() / temperature, dim=1)
    allowed = torch.logsumexp((logits.float() / temperature).masked_fill(~grammar, float("-inf")), dim=1)
    return (kept - allowed).double()


def resampled(log_weights, pieces: int, particles: int):
    """Row order after systematic resampling of each piece whose particles' effective number is
    below RESAMPLE_BELOW of them (None: no piece needs it)."""
    import torch
    device = log_weights.device
    weights = torch.softmax(log_weights.cpu().view(pieces, particles), dim=1)  # the CPU's generator on any device
    effective = 1.0 / (weights ** 2).sum(dim=1)
    low = effective < RESAMPLE_BELOW * particles
    if not low.any():
        return None
    order = torch.arange(pieces * particles).view(pieces, particles).clone()
    positions = (torch.rand(pieces, 1, dtype=torch.float64) + torch.arange(particles)) / particles
    cumulative = weights.cumsum(dim=1)
    cumulative[:, -1] = 1.0
    picks = torch.searchsorted(cumulative, positions).clamp(max=particles - 1)
    order[low] = (picks + torch.arange(pieces)[:, None] * particles)[low]
    return order.reshape(-1).to(device)


def copies(constraints: list, order: list[int]) -> list:
    """constraints reordered: a row kept once stays itself, a duplicated one is copied."""
    taken, result = set(), []
    for source in order:
        result.append(constraints[source] if source not in taken else constraints[source].copy())
        taken.add(source)
    return result
