"""What training, sampling and evaluation share about the language model: tokenizers, how
pieces become token blocks, loading and building models, and tokenizer-independent scoring."""
from __future__ import annotations

import bisect
import math
from pathlib import Path

from scorelm.cli import UserError

# The word-level tokenizer's special tokens. EOS begins every piece (so a piece's first `|`
# has something before it to be predicted from) and so also separates packed pieces.
PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
WORD_MARK = "\u2581"  # word-level tokens carry a leading-space mark, as BPE tokens do ("Ġ")
HUB_HELP = ("give a local model directory in model_name, or train offline from scratch: "
            "--config configs/cpu_quickstart.json")


def model_text(text: str) -> str:
    """The string the tokenizer sees: every symbol preceded by a space, so a continuation
    decodes to text that can be appended as it is."""
    return " " + " ".join(text.split())


def symbols(texts) -> list[str]:
    """The distinct words of the language in `texts`, most frequent first."""
    from collections import Counter
    counts = Counter(word for text in texts for word in text.split())
    return [word for word, _ in counts.most_common()]


# ----------------------------------------------------------------------------- tokenizers

def train_word_tokenizer(texts):
    """A word-level tokenizer over the language's symbols, trained with the `tokenizers` library;
    it always holds language.HEADER_WORDS."""
    from scorelm import language
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement=WORD_MARK, prepend_scheme="always", split=True)])
    tokenizer.decoder = decoders.Metaspace(replacement=WORD_MARK, prepend_scheme="never", split=True)
    trainer = trainers.WordLevelTrainer(special_tokens=[PAD, UNK, EOS])
    tokenizer.train_from_iterator(list(texts) + [" ".join(language.HEADER_WORDS)], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, unk_token=UNK,
                                   eos_token=EOS, bos_token=EOS)


def tokens_per_piece(tokenizer, texts) -> float:
    lengths = [len(tokenizer(model_text(t), add_special_tokens=False)["input_ids"]) for t in texts]
    return sum(lengths) / max(1, len(lengths))


def add_score_tokens(tokenizer, texts) -> int:
    """Add each symbol of `texts` (and every header word) that the tokenizer splits into several
    pieces, or does not know, as one token. Returns how many were added.

    A word-level tokenizer (a ScoreLM model from scratch, fine-tuned on a corpus with words it
    never saw) gains the words in its own vocabulary, after the ids it has, so that every word it
    knew keeps its id and its tokenization. Added tokens would not do: they are matched inside
    words, so an added ' D5:0' (a grace note) would cut the known ' D5:0.5' into ' D5:0' and an
    unknown '.5'. A BPE tokenizer (Pythia's) gains them as added tokens, with their leading space
    as BPE vocabularies store words; each word is matched whole, longest first."""
    from tokenizers import AddedToken, models

    from scorelm import language
    backend = tokenizer.backend_tokenizer
    words = symbols(list(texts) + [" ".join(language.HEADER_WORDS)])
    if isinstance(backend.model, models.WordLevel):
        vocabulary = backend.get_vocab(with_added_tokens=False)
        unknown = [w for w in words if WORD_MARK + w not in vocabulary]
        if not unknown:
            return 0
        used = max(tokenizer.get_vocab().values()) + 1  # added tokens' ids too
        vocabulary.update({WORD_MARK + w: used + k for k, w in enumerate(unknown)})
        backend.model = models.WordLevel(vocab=vocabulary, unk_token=tokenizer.unk_token)
        return len(unknown)
    new = []
    for word in words:
        ids = tokenizer(f" {word}", add_special_tokens=False)["input_ids"]
        if len(ids) > 1 or (tokenizer.unk_token_id is not None and ids == [tokenizer.unk_token_id]):
            new.append(AddedToken(f" {word}", normalized=False))
    return tokenizer.add_tokens(new)


def ensure_special_tokens(tokenizer) -> None:
    """Pretrained tokenizers (Pythia's among them) may lack a pad token; EOS serves, since
    padded positions are masked out of the loss."""
    if tokenizer.eos_token is None:
        tokenizer.add_special_tokens({"eos_token": EOS})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def bar_token_id(tokenizer) -> int:
    return word_id(tokenizer, "|")


def word_id(tokenizer, word: str) -> int:
    """The id of a word of the language that the tokenizer holds as one token."""
    ids = tokenizer(f" {word}", add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"the tokenizer has no single token for ' {word}'")
    return ids[0]


def piece_ids(tokenizer, text: str) -> list[int]:
    return [tokenizer.eos_token_id] + tokenizer(model_text(text), add_special_tokens=False)["input_ids"]


# ----------------------------------------------------------------------------- blocks

def pack_blocks(pieces: list[list[int]], boundary_ids: set[int], max_length: int,
                whole: set[int] | None = None) -> tuple[list[list[int]], int]:
    """Concatenate pieces and cut the stream into blocks of at most `max_length` tokens that
    begin at a piece start (EOS) or a measure start (`|`). Consecutive blocks share one token:
    block k ends with the boundary token block k+1 begins with, so every token after the first
    is predicted exactly once (which keeps the evaluation's totals exact). `whole`: indices of
    pieces never cut (where one fits a block): a block ends before such a piece rather than
    inside it (a piece shown for infilling is learnt from only when the span and the music after
    it are in one block). Returns the blocks and how many cuts fell inside a measure (a measure
    longer than a block)."""
    stream = [token for piece in pieces for token in piece]
    starts = [0]
    for piece in pieces:
        starts.append(starts[-1] + len(piece))
    blocks, start, forced = [], 0, 0
    while start < len(stream) - 1:
        last = start + max_length - 1  # the furthest index a block from `start` may reach
        if last >= len(stream) - 1:
            blocks.append(stream[start:])
            break
        cut = next((i for i in range(last, start, -1) if stream[i] in boundary_ids), None)
        if cut is None:
            cut, forced = last, forced + 1
        if whole:
            piece = bisect.bisect_right(starts, cut) - 1  # the piece the cut falls in
            if piece in whole and starts[piece] < cut and starts[piece] > start:
                cut = starts[piece]  # the block ends where that piece begins (its EOS, shared)
        blocks.append(stream[start:cut + 1])
        start = cut
    return blocks, forced


def pack_texts(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], int, int]:
    """Pieces of text as training blocks: (blocks, tokens in all pieces, cuts inside a measure)."""
    ids = [piece_ids(tokenizer, text) for text in texts]
    blocks, forced = pack_blocks(ids, {tokenizer.eos_token_id, bar_token_id(tokenizer)}, max_length)
    return blocks, sum(len(i) for i in ids), forced


def collate(blocks: list[list[int]], pad_id: int, forbidden: list | None = None) -> dict:
    """Right-padded batch; padded positions are masked and carry no label. forbidden: per block,
    an array of (position, forbidden id) pairs (from decoding.unlikelihood.forbidden_notes), given to the
    batch as the (row, position, id) triples forbidden_mass_penalty reads."""
    import torch
    width = max(len(b) for b in blocks)
    input_ids = torch.full((len(blocks), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(blocks), width), dtype=torch.long)
    for row, block in enumerate(blocks):
        input_ids[row, :len(block)] = torch.tensor(block)
        attention_mask[row, :len(block)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    if forbidden is not None:
        rows = torch.cat([torch.full((len(pairs),), row) for row, pairs in enumerate(forbidden)])
        pairs = torch.cat([torch.as_tensor(pairs, dtype=torch.long).reshape(-1, 2) for pairs in forbidden])
        batch["forbidden"] = torch.cat([rows[:, None], pairs], dim=1)
    return batch


def count_notes(texts) -> int:
    """Notes (a chord's each), grace notes and rests: the unit of bits per note, the same
    whatever the tokenizer."""
    return sum(1 for text in texts for word in text.split() if word[0] in "ABCDEFG+" or word.startswith("R:"))


# ----------------------------------------------------------------------------- models

def load_pretrained(model_name: str, trust_remote_code: bool = False, **model_kwargs):
    """Model and tokenizer from a Hub id or a local directory; one clear error if neither works."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    local = Path(model_name).expanduser()
    source = str(local) if local.is_dir() else model_name
    looks_like_path = model_name.startswith((".", "/", "~")) or model_name.count("/") > 1
    if not local.is_dir() and looks_like_path:
        raise UserError(f"model_name {model_name!r}: no such directory; {HUB_HELP}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(source, trust_remote_code=trust_remote_code, **model_kwargs)
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot load model {model_name!r} ({first[:160]}); {HUB_HELP}") from None
    return model, tokenizer


# The shape scratch_model's keys are merged over (Pythia's remaining defaults come from GPTNeoXConfig:
# partial rotary embeddings on a quarter of each head, parallel residual, GELU, untied embeddings).
SCRATCH_SHAPE = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024}
# Keys the data decides, not the user.
_DERIVED_KEYS = {"vocab_size", "bos_token_id", "eos_token_id", "pad_token_id"}


def build_scratch_model(shape: dict, tokenizer, max_length: int, seed: int):
    """A GPT-NeoX (Pythia's architecture) of `shape` (merged over SCRATCH_SHAPE), seeded."""
    import inspect

    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    allowed = set(inspect.signature(GPTNeoXConfig.__init__).parameters) - _DERIVED_KEYS - {"self", "kwargs"}
    for key in shape:
        if key not in allowed:
            import difflib
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UserError(f"config key scratch_model: {key!r} is not a GPTNeoXConfig key{hint}")
    settings = {**SCRATCH_SHAPE, "max_position_embeddings": max_length, **shape}
    try:
        config = GPTNeoXConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **settings)
        torch.manual_seed(seed)
        return GPTNeoXForCausalLM(config)
    except (TypeError, ValueError) as error:
        raise UserError(f"config key scratch_model: {error}") from None


def token_nll(model, batch) -> tuple:
    """Per-block summed negative log-likelihood (nats) and predicted-token counts."""
    import torch
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets,
                                               ignore_index=-100, reduction="none")
    return losses.sum(dim=1), (targets != -100).sum(dim=1)


def forbidden_mass_penalty(logits, forbidden):
    """The unlikelihood term (Welleck et al., 2019) of train.py's unlikelihood_weight:
    -log(1 - P(forbidden words)), averaged over the positions that have forbidden words (0 for
    a batch with none).
    `forbidden` holds (row, position, token id) triples, one per forbidden word of the word at
    that position of the batch; the logits one position earlier predict it. Written here because
    transformers' losses have no term for a set of words to keep probability away from."""
    import torch
    if not len(forbidden):
        return logits.new_zeros((), dtype=torch.float32)
    places, place_of = torch.unique(forbidden[:, :2], dim=0, return_inverse=True)
    log_probs = torch.log_softmax(logits[places[:, 0], places[:, 1] - 1].float(), dim=-1)
    chosen = torch.zeros_like(log_probs, dtype=torch.bool)
    chosen[place_of, forbidden[:, 2]] = True
    forbidden_mass = log_probs.masked_fill(~chosen, float("-inf")).logsumexp(dim=-1).exp()
    return -torch.log1p(-forbidden_mass.clamp(max=1 - 1e-6)).mean()


DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str = "auto"):
    """The torch device to run a model on: `auto` takes CUDA, else Apple's MPS, else the CPU; a
    device asked for and absent is a one-line error."""
    import torch

    from scorelm.cli import UserError
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise UserError("--device cuda: no CUDA GPU here (torch.cuda.is_available() is False)")
    if name == "mps" and not mps:
        raise UserError("--device mps: no Apple GPU here (torch.backends.mps.is_available() is False)")
    if name not in DEVICES:
        raise UserError(f"--device must be one of {', '.join(DEVICES)}, not {name}")
    return torch.device(name)


def inference_dtype(device):
    """bf16 on a GPU that computes in it (it halves memory and doubles speed, and the models are
    trained in bf16); float32 elsewhere, so that a CPU gives the same samples as before."""
    import torch
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


FILLED_SDPA = "scorelm_filled_sdpa"
KEY_BLOCK = 32  # PyTorch's CPU attention adds up keys in blocks of this many (tests/test_attention.py holds it to that)


def filled_sdpa(module, query, key, value, attention_mask, **kwargs):
    """transformers' sdpa attention, over the filled part of a preallocated KV cache only.

    From 16 rows the decoder preallocates the cache (transformers' StaticCache): each step then
    attended over the whole preallocated length, the positions not yet written masked, about a
    quarter of a batch's time on 2 CPU cores. Here a one-token step on the CPU attends over the
    written positions rounded up to KEY_BLOCK: PyTorch's CPU kernel gives exactly the same
    numbers for any length from there to the full one (a masked key adds an exact zero within its
    block), so the samples are the same bit for bit. Anything else (a prompt, a GPU) goes to
    transformers' sdpa unchanged."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    length = key.shape[2]
    if attention_mask is not None and attention_mask.dtype == torch.bool and query.shape[2] == 1 \
            and query.device.type == "cpu" and length > KEY_BLOCK:
        attended = torch.nonzero(attention_mask.reshape(-1, length).any(0))  # by some row
        cut = min(length, -(-(int(attended[-1]) + 1) // KEY_BLOCK) * KEY_BLOCK) if len(attended) else length
        if cut < length:
            key, value, attention_mask = key[:, :, :cut], value[:, :, :cut], attention_mask[..., :cut]
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def attend_written_positions(model) -> None:
    """Let a model that attends with sdpa attend as filled_sdpa (registered with transformers
    once: the attention and its mask, as sdpa's)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return
    AttentionInterface.register(FILLED_SDPA, filled_sdpa)
    AttentionMaskInterface.register(FILLED_SDPA, sdpa_mask)
    model.set_attn_implementation(FILLED_SDPA)


def evaluate_texts(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 8) -> dict:
    """Loss, perplexity and bits per note of `texts`, packed as in training (plain PyTorch,
    one process; train.py does the same through accelerate)."""
    import torch
    blocks, _, _ = pack_texts(tokenizer, texts, max_length)
    nll, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(blocks), batch_size):
            batch = {k: v.to(model.device) for k, v in collate(blocks[start:start + batch_size],
                                                                tokenizer.pad_token_id).items()}
            block_nll, block_tokens = token_nll(model, batch)
            nll += float(block_nll.double().sum())
            tokens += int(block_tokens.sum())
    return metrics_from_totals(nll, tokens, count_notes(texts))


def metrics_from_totals(nll_nats: float, tokens: int, notes: int) -> dict:
    loss = nll_nats / max(1, tokens)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50)), "bits_per_note": nll_nats / math.log(2) / max(1, notes),
            "tokens": tokens, "notes": notes}

