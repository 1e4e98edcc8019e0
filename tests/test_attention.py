"""Attention over the written part of a preallocated KV cache (lm.filled_sdpa) gives exactly the
numbers of attention over the whole cache, and so the same samples."""
from __future__ import annotations

import pytest
import torch
from transformers.integrations import sdpa_attention

from scorelm import decoding, lm, writing


@pytest.mark.parametrize("head_size", [16, 32, 48, 64, 128])  # the tiny test model's, the configs', Pythia's
def test_attention_over_the_written_positions_is_the_whole_cache_s_bit_for_bit(head_size, monkeypatch):
    generator = torch.Generator().manual_seed(head_size)
    rows, heads, preallocated = 17, 4, 600
    query = torch.randn(rows, heads, 1, head_size, generator=generator)
    key = torch.randn(rows, heads, preallocated, head_size, generator=generator)
    value = torch.randn(rows, heads, preallocated, head_size, generator=generator)
    attended = []
    whole_cache = sdpa_attention.sdpa_attention_forward
    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward",
                        lambda module, q, k, *rest, **kwargs: attended.append(k.shape[2]) or whole_cache(module, q, k, *rest, **kwargs))
    module = torch.nn.Module()
    for written in [1, 31, 32, 33, 100, 257, 511, 599, 600]:
        mask = torch.ones(rows, 1, 1, preallocated, dtype=torch.bool)
        mask[..., written:] = False
        mask[0, ..., :3] = False  # a row padded on the left
        ours, _ = lm.filled_sdpa(module, query, key, value, mask, scaling=head_size ** -0.5)
        theirs, _ = whole_cache(module, query, key, value, mask, scaling=head_size ** -0.5)
        assert torch.equal(ours, theirs), written
        assert attended[-1] == min(preallocated, -(-written // lm.KEY_BLOCK) * lm.KEY_BLOCK)


def test_a_loaded_model_attends_over_the_written_positions_with_the_same_samples(tiny_model):
    loaded = writing.LoadedModel.load(tiny_model, "cpu")
    assert loaded.model.config._attn_implementation == lm.FILLED_SDPA
    settings = loaded.settings(rules="mixed", particles=1)
    rows = decoding.particles.STATIC_CACHE_ROWS  # from here the cache is preallocated

    def samples():
        return decoding.generate_texts(loaded.model, loaded.tokenizer, "|", rows, settings, max_new_tokens=200,
                                       seed=7, vocabulary=loaded.vocabulary)

    ours = samples()
    loaded.model.set_attn_implementation("sdpa")
    assert samples() == ours
