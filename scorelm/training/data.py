"""The training data: the dataset's splits read and checked, what the model card records of the
training pieces, and where the decoder's hard rules forbid words in them (unlikelihood_weight)."""
from __future__ import annotations

import sys
from pathlib import Path

from scorelm import dataset, language, lm, model_folder
from scorelm.cli import UserError


def load_splits(folder: Path) -> dict[str, list[dict]]:
    """The records of each split, loaded with `datasets` from generate_data.py's JSON lines."""
    import datasets
    files = {name: folder / f"{name}.jsonl" for name in dataset.SPLITS}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise UserError(f"dataset file {missing[0]} not found; run python generate_data.py first "
                        f"(or set the dataset key)")
    datasets.disable_progress_bars()
    for path in files.values():
        dataset.read_records(path)  # each record against the schema: one line naming file, line and field
    # an empty split (a dataset made with --split 95/5/0) is no data to `datasets`, and an error
    present = {name: str(path) for name, path in files.items() if path.read_text(errors="replace").strip()}
    try:
        loaded = datasets.load_dataset("json", data_files=present) if present else {}
    except Exception as error:  # a malformed file: say which folder, not a traceback
        raise UserError(f"cannot read the dataset in {folder}: {' '.join(str(error).split())[:200]}") from None
    splits = {name: loaded[name].to_list() if name in present else [] for name in dataset.SPLITS}
    if not splits["train"]:
        raise UserError(f"{files['train']} holds no pieces")
    return splits


def fill_voices(records: list[dict]) -> None:
    """Give records from datasets that predate the "voices" and "voice_ranges" fields both, parsed
    from the text (each record once)."""
    for record in records:
        if "voice_ranges" not in record or "voices" not in record:
            piece = language.parse(record["text"])[0][0]
            record.update(voices=piece.num_voices, voice_ranges=language.voice_ranges(piece))


def part_words(text: str) -> tuple[str, ...]:
    """The P words of a piece's first measure: its layout of parts and staves (none in a chorale)."""
    return tuple(word for word in text.split(" V1 ", 1)[0].split() if word.startswith("P:"))


def score_metadata(train_records: list[dict]) -> model_folder.ModelCard:
    """What sampling needs to know of the training data: the usual number of voices, each
    voice's pitch range (the constrained decoder keeps voices inside them), the usual layout of
    parts and staves for each number of voices, and how many pieces use each time signature and
    key signature (a melody in a meter or a key the model hardly knows is harmonized renotated or
    moved: melody.meter_for_the_model, melody.key_for_the_model)."""
    from collections import Counter
    fill_voices(train_records)
    ranges = dataset.corpus_voice_ranges(train_records)
    layouts: dict[int, Counter] = {}
    for record in train_records:
        layouts.setdefault(record["voices"], Counter())[part_words(record["text"])] += 1
    parts = {}
    for voices, counts in layouts.items():
        words = counts.most_common(1)[0][0]
        parts[voices] = [list(language.parse_token(w).staves) for w in words] or None
    return model_folder.ModelCard(
        format_version=language.FORMAT_VERSION, voices=Counter(r["voices"] for r in train_records).most_common(1)[0][0],
        voice_ranges={n: [list(r) for r in per_voice] for n, per_voice in ranges.items()}, parts=parts,
        time_signatures=header_counts(train_records, "T:"), key_signatures=header_counts(train_records, "K:"))


def header_counts(records: list[dict], prefix: str) -> dict[str, int]:
    """How many pieces use each header word of a kind ("T:3/4", "K:-2"), most used first."""
    from collections import Counter
    return dict(Counter(word for r in records for word in {w for w in r["text"].split() if w.startswith(prefix)})
                .most_common())


def forbidden_words_by_block(tokenizer, records: list[dict], blocks: list[list[int]], log,
                             show_progress: bool = True) -> list:
    """For unlikelihood_weight: where the decoder's hard rules forbid words in the training pieces
    (decoding.unlikelihood.forbidden_notes), as an array of (position, forbidden id) pairs per block. The
    blocks are lm.pack_texts' cut of the same pieces: consecutive blocks share one token, so block
    k starts at the sum of the earlier blocks' lengths less one each."""
    import bisect

    import numpy as np
    from tqdm import tqdm

    from scorelm.decoding import Vocabulary
    from scorelm.decoding.unlikelihood import forbidden_notes
    vocabulary = Vocabulary.from_tokenizer(tokenizer)
    starts, start = [], 0
    for block in blocks:
        starts.append(start)
        start += len(block) - 1
    pairs: list[list] = [[] for _ in blocks]
    offset, places, words = 0, 0, 0
    fill_voices(records)
    for record in tqdm(records, desc="rules over the training pieces", unit="piece", file=sys.stderr,
                       dynamic_ncols=True, disable=not show_progress or len(records) < 50):
        ids = lm.piece_ids(tokenizer, record["text"])
        if part_words(record["text"]):
            offset += len(ids)  # a keyboard's staves of voices: the rules are four-part writing's (as in decoding.settings)
            continue
        for position, forbidden in forbidden_notes(vocabulary, ids, record["voices"]):
            at = offset + position  # in the stream of all pieces; the block that predicts it:
            block = bisect.bisect_left(starts, at) - 1  # starts[block] < at <= starts[block + 1]
            pairs[block].append(np.stack([np.full(len(forbidden), at - starts[block]), forbidden], axis=1))
            places, words = places + 1, words + len(forbidden)
        offset += len(ids)
    log(f"unlikelihood: the rules forbid {words} words at {places} positions of the training pieces")
    return [np.concatenate(p) if p else np.zeros((0, 2), dtype=np.int64) for p in pairs]
