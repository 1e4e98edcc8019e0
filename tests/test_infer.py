"""infer.py on weak tiny models: constrained samples are always valid scores, harmonization keeps
the melody, surprisal covers every note, seeds repeat, bad prompts are one-line errors."""
from __future__ import annotations

import csv
import dataclasses
import math

import pytest
from conftest import run_script

from scorelm import dataset, language
from scorelm import melody as fitting
from scorelm.cli import UserError


def training_texts(tiny_dataset):
    return [r["text"] for r in dataset.read_jsonl(tiny_dataset / "train.jsonl")]


def prompts(tiny_dataset) -> dict[str, str]:
    texts = training_texts(tiny_dataset)
    three_four = next(t for t in texts if "T:3/4" in t.split()[:4])
    pickup = next(t for t in texts if t.split()[3].startswith("L:"))
    words = pickup.split()
    bars = [i for i, w in enumerate(words) if w == "|"]
    mid_measure = words[:bars[2] + 1]
    mid_measure = mid_measure[:mid_measure.index("V3", bars[1]) - 1]  # inside voice 2 of measure 2
    first_key = three_four.split()[1]
    return {"new piece": "|", "3/4 header": f"| {first_key} T:3/4", "after a pickup measure": " ".join(words[:bars[1] + 1]),
            "mid-measure": " ".join(mid_measure)}


def assert_valid_samples(text: str, prompt: str, count: int) -> None:
    samples = text.strip().splitlines()
    assert len(samples) == count
    for sample in samples:
        assert sample.startswith(prompt)
        pieces, report = language.parse(sample)
        assert report.total == 0, (sample, report.lines())
        assert len(pieces) == 1 and pieces[0].num_voices == 4


@pytest.mark.parametrize("name", ["new piece", "3/4 header", "after a pickup measure", "mid-measure"])
@pytest.mark.parametrize("seed", [1, 2])
def test_constrained_samples_are_valid_scores(tiny_model, tiny_dataset, name, seed):
    prompt = prompts(tiny_dataset)[name]
    result = run_script("infer.py", prompt, "--model", tiny_model, "--num-samples", 6, "--seed", seed,
                        "--max-new-tokens", 160)
    assert result.returncode == 0, result.stderr
    assert_valid_samples(result.stdout, prompt, 6)


def test_measures_and_header_options(tiny_model, tiny_dataset):
    key = prompts(tiny_dataset)["3/4 header"].split()[1]
    result = run_script("infer.py", "|", "--model", tiny_model, "--key", key[2:], "--time", "3/4",
                        "--measures", 3, "--num-samples", 4, "--seed", 3)
    assert result.returncode == 0, result.stderr
    assert_valid_samples(result.stdout, f"| {key} T:3/4", 4)
    for sample in result.stdout.splitlines():
        assert len(language.parse(sample)[0][0].measures) == 3


def test_bpe_tokenizer_samples_are_valid_scores(tiny_bpe_model):
    result = run_script("infer.py", "|", "--model", tiny_bpe_model, "--num-samples", 6, "--seed", 4,
                        "--max-new-tokens", 160)
    assert result.returncode == 0, result.stderr
    assert_valid_samples(result.stdout, "|", 6)


def test_model_vocabulary_wider_than_its_tokenizer(tiny_model, tmp_path):
    """Pythia pads its embeddings beyond its tokenizer (50,304 rows for 50,277 tokens): the
    constraint forbids the extra ids rather than failing on scores wider than its masks."""
    import shutil

    from transformers import AutoModelForCausalLM
    padded = tmp_path / "padded"
    shutil.copytree(tiny_model, padded, ignore=shutil.ignore_patterns("checkpoints"))
    model = AutoModelForCausalLM.from_pretrained(padded)
    model.resize_token_embeddings(model.config.vocab_size + 13)
    model.save_pretrained(padded)
    result = run_script("infer.py", "|", "--model", padded, "--num-samples", 4, "--seed", 2, "--max-new-tokens", 120)
    assert result.returncode == 0, result.stderr
    assert_valid_samples(result.stdout, "|", 4)


def test_seed_repeats(tiny_model):
    runs = [run_script("infer.py", "|", "--model", tiny_model, "--seed", seed, "--max-new-tokens", 80).stdout
            for seed in (7, 7, 8)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_unconstrained_sampling_runs(tiny_model):
    result = run_script("infer.py", "|", "--model", tiny_model, "--no-constrain", "--seed", 1, "--max-new-tokens", 60)
    assert result.returncode == 0 and result.stdout.startswith("|")


def test_render_writes_notation(tiny_model, tmp_path):
    result = run_script("infer.py", "|", "--model", tiny_model, "--seed", 1, "--measures", 4,
                        "-o", tmp_path / "piece.txt", "--render")
    assert result.returncode == 0, result.stderr
    for suffix in (".txt", ".musicxml", ".mid", ".png"):
        assert (tmp_path / f"piece{suffix}").stat().st_size > 0
    score = language.read_score(tmp_path / "piece.musicxml")
    # the sample as the model wrote it may restate an unchanged signature; the file holds the piece
    assert language.encode_score(score) == language.parse((tmp_path / "piece.txt").read_text())[0][0].to_text()


def melody_file(tiny_dataset, folder):
    text = next(t for t in training_texts(tiny_dataset) if "T:3/4" in t.split()[:4])
    piece = language.parse(text)[0][0]
    melody = piece.top_voice()
    path = folder / "melody.musicxml"
    language.score_from_piece(melody).write("musicxml", fp=str(path))
    return path, melody


def test_harmonization_keeps_the_melody(tiny_model, tiny_dataset, tmp_path):
    path, melody = melody_file(tiny_dataset, tmp_path)
    result = run_script("infer.py", "--harmonize", path, "--model", tiny_model, "--seed", 5, "-o", tmp_path / "h.txt")
    assert result.returncode == 0, result.stderr
    pieces, report = language.parse((tmp_path / "h.txt").read_text())
    assert report.total == 0, report.lines()  # every voice fills every measure
    harmonized = pieces[0]
    assert harmonized.num_voices == 4 and len(harmonized.measures) == len(melody.measures)
    assert harmonized.voice_events(0) == melody.voice_events(0)  # the soprano, note for note
    assert all(any(e.pitch for _, e in harmonized.voice_events(v)) for v in (1, 2, 3))


def test_which_meters_are_renotated_for_the_model():
    from fractions import Fraction
    from scorelm.model_folder import ModelCard
    chorales = ModelCard(time_signatures={"T:4/4": 294, "T:3/4": 35, "T:12/8": 1})
    half, quarter = Fraction(1, 2), Fraction(1, 4)
    expected = {"4/2": half, "3/2": half, "4/1": quarter, "3/1": quarter,
                "4/4": 1, "3/4": 1, "2/2": 1, "6/4": 1, "12/8": 1}  # 2/4, 3/8 and 12/8: under 1% of the chorales
    for meter, factor in expected.items():
        melody = f"| K:0 T:{meter} V1 C5:{language.format_duration(language.bar_length(meter))} ||"
        assert fitting.meter_for_the_model(melody, chorales)[0] == factor, meter
    hymn = "| K:0 T:3/2 V1 C5:6 | T:4/2 V1 C5:8 | T:2/2 V1 C5:4 ||"
    assert fitting.meter_for_the_model(hymn, chorales) == (1, hymn)  # its 2/2 would be 2/4: none of it renotated
    assert fitting.meter_for_the_model(hymn, ModelCard(time_signatures={"T:3/2": 5, "T:4/2": 5, "T:2/2": 5})) == (1, hymn)
    assert fitting.meter_for_the_model(hymn.replace(" | T:2/2 V1 C5:4", ""), chorales) == \
        (Fraction(1, 2), "| K:0 T:3/4 V1 C5:3 | T:4/4 V1 C5:4 ||")
    assert fitting.meter_for_the_model("| K:0 T:4/2 V1 C5:1/96 ||", chorales)[0] == 1  # 1/192: out of the language
    assert fitting.meter_for_the_model(hymn, ModelCard()) == (1, hymn)  # a model saved before the count


def test_a_melody_in_half_note_beats_is_harmonized_in_quarters_and_written_back(tiny_model, tiny_dataset, tmp_path):
    """A 4/4 chorale melody written in 4/2 (every value doubled; no training piece is in 4/2) is
    harmonized as the 4/4 one is, note for note at the same seed, and written back in 4/2 with
    its melody exact."""
    import json
    from collections import Counter
    texts = training_texts(tiny_dataset)
    meters = json.loads((tiny_model / "scorelm.json").read_text())["time_signatures"]
    assert meters == dict(Counter(w for t in texts for w in {w for w in t.split() if w.startswith("T:")}))
    assert "T:4/2" not in meters and meters["T:4/4"] > 0.5 * len(texts)
    text = next(t for t in texts if "T:4/4" in t.split()[:4] and t.count("T:") == 1)
    melody = language.parse(text)[0][0].top_voice()
    path = tmp_path / "melody.musicxml"
    language.score_from_piece(melody).write("musicxml", fp=str(path))
    slow = language.parse(language.scale_durations(melody.to_text(), 2))[0][0]
    assert slow.measures[0].time == "4/2"
    slow_path = tmp_path / "slow.musicxml"
    language.score_from_piece(slow).write("musicxml", fp=str(slow_path))
    result = run_script("infer.py", "--harmonize", slow_path, "--model", tiny_model, "--seed", 5, "-o", tmp_path / "slow.txt")
    assert result.returncode == 0, result.stderr
    assert "harmonizing the melody in 4/4 (every note value halved) and writing it back in 4/2" in result.stderr
    pieces, report = language.parse((tmp_path / "slow.txt").read_text())
    assert report.total == 0, report.lines()
    assert pieces[0].num_voices == 4 and pieces[0].measures[0].time == "4/2"
    assert pieces[0].voice_events(0) == slow.voice_events(0)  # the melody as given
    result = run_script("infer.py", "--harmonize", path, "--model", tiny_model, "--seed", 5, "-o", tmp_path / "h.txt")
    assert result.returncode == 0 and "harmonizing the melody in" not in result.stderr
    from fractions import Fraction
    assert language.scale_durations((tmp_path / "slow.txt").read_text(), Fraction(1, 2)) == \
        (tmp_path / "h.txt").read_text().strip()


def test_a_new_piece_in_half_note_beats_is_written_in_quarters_and_written_back(tiny_model, tmp_path):
    from fractions import Fraction
    slow = run_script("infer.py", "|", "--time", "4/2", "--key", "G", "--model", tiny_model, "--seed", 3,
                      "--measures", 3, "-o", tmp_path / "slow.txt")
    assert slow.returncode == 0, slow.stderr
    assert "note: the model hardly knows 4/2; writing in 4/4 (every note value halved)" in slow.stderr
    written = (tmp_path / "slow.txt").read_text()
    pieces, report = language.parse(written)
    assert report.total == 0 and pieces[0].measures[0].time == "4/2" and len(pieces[0].measures) == 3
    usual = run_script("infer.py", "|", "--time", "4/4", "--key", "G", "--model", tiny_model, "--seed", 3,
                       "--measures", 3, "-o", tmp_path / "usual.txt")
    assert usual.returncode == 0 and "hardly knows" not in usual.stderr
    assert language.scale_durations(written, Fraction(1, 2)) == (tmp_path / "usual.txt").read_text().strip()


def test_which_melodies_are_moved_for_the_model(tiny_model, tiny_dataset):
    """A melody with notes the model has no words for, or in a key signature it hardly knows, is
    moved (the smallest move, the soprano's training range kept) to where it has and knows them;
    one it can be shown as it is stays; one whose durations no move helps is an error naming the
    word."""
    import json
    from scorelm import decoding, model_folder
    _, tokenizer, card = model_folder.load(tiny_model)
    vocabulary = decoding.Vocabulary.from_tokenizer(tokenizer)
    texts = training_texts(tiny_dataset)
    keys = json.loads((tiny_model / "scorelm.json").read_text())["key_signatures"]
    assert keys == {k: sum(k in t.split() for t in texts) for k in keys} and sum(keys.values()) >= len(texts)
    melody = language.parse(next(t for t in texts if t.count("K:") == 1))[0][0].top_voice().to_text()
    assert fitting.key_for_the_model(melody, card, vocabulary) == (None, melody)
    high = language.transpose_text(melody, "P8")
    with pytest.raises(UserError):  # an octave up: above every pitch word the model has
        fitting.melody_plan(language.parse(high)[0][0], vocabulary)
    interval, shown = fitting.key_for_the_model(high, card, vocabulary)
    assert interval is not None and interval.startswith(("P-", "M-", "m-", "A-", "d-"))
    fitting.melody_plan(language.parse(shown)[0][0], vocabulary)  # every note now a word it has
    low, top = card.ranges(4)[0]
    lowest, highest = language.voice_ranges(language.parse(melody)[0][0])[0]
    shown_range = language.voice_ranges(language.parse(shown)[0][0])[0]
    assert low <= lowest and highest <= top  # the melody as written fits the soprano's range: so must the move
    assert low <= shown_range[0] and shown_range[1] <= top
    assert language.transpose_text(shown, language.inverse_interval(interval)) == high
    key = next(w for w in melody.split() if w.startswith("K:"))
    others = {k: n for k, n in keys.items() if k != key}
    interval, shown = fitting.key_for_the_model(melody, dataclasses.replace(card, key_signatures=others), vocabulary)
    assert interval is not None and next(w for w in shown.split() if w.startswith("K:")) in others
    triplet = "| K:0 T:4/4 V1 C5:1/12 C5:11/12 C5:1 C5:2 ||"
    with pytest.raises(UserError, match="C5:1/12"):  # a triplet sixteenth has no word at any pitch
        fitting.melody_plan(language.parse(triplet)[0][0], vocabulary, approximate=False)
    assert "C5:1" in vocabulary.ids_of and "C5:2" in vocabulary.ids_of
    # no move helps, so it is shown joined to its neighbour, at its own pitch
    assert fitting.key_for_the_model(triplet, card, vocabulary) == (None, triplet)
    assert fitting.melody_plan(language.parse(triplet)[0][0], vocabulary)[0][-3:] == ["C5:1", "C5:1", "C5:2"]
    assert fitting.joined_words(language.parse(triplet)[0][0], vocabulary) == ["C5:1/12", "C5:11/12"]  # now one C5:1


def test_a_melody_in_2_4_is_harmonized_two_measures_as_one(tiny_model, tiny_dataset, tmp_path):
    """A melody in 2/4, which no chorale is in: shown to the model with each two measures as one
    of 4/4, which it knows, and written back in 2/4; the same as harmonizing the paired melody
    and parting its measures again, the melody exact, every measure valid."""
    from fractions import Fraction
    from scorelm import model_folder
    _, _, card = model_folder.load(tiny_model)
    assert "T:4/4" in card.time_signatures and "T:2/4" not in card.time_signatures
    text = next(t for t in training_texts(tiny_dataset) if t.split()[2] == "T:4/4" and t.count("T:") == 1
                and t.count("K:") == 1 and " L:" not in t)
    melody = language.parse(text)[0][0].top_voice()
    two = Fraction(2)
    halves = language.split_measures(melody, [[two, two]] * len(melody.measures), "2/4").to_text()
    pairing, shown = fitting.measures_for_the_model(halves, card)
    assert pairing == ("2/4", [[two, two]] * len(melody.measures)) and shown == melody.to_text()
    assert fitting.measures_for_the_model(melody.to_text(), card) == (None, melody.to_text())  # its own meter
    (tmp_path / "halves.txt").write_text(halves + "\n")
    result = run_script("infer.py", "--harmonize", tmp_path / "halves.txt", "--model", tiny_model, "--seed", 6,
                        "-o", tmp_path / "out.txt")
    assert result.returncode == 0, result.stderr
    assert "harmonizing the melody in 4/4, two measures as one, and writing it back in 2/4" in result.stderr
    pieces, report = language.parse((tmp_path / "out.txt").read_text())
    assert report.total == 0 and pieces[0].num_voices == 4 and pieces[0].measures[0].time == "2/4"
    assert len(pieces[0].measures) == 2 * len(melody.measures)
    assert pieces[0].voice_events(0) == language.parse(halves)[0][0].voice_events(0)
    (tmp_path / "whole.txt").write_text(shown + "\n")
    result = run_script("infer.py", "--harmonize", tmp_path / "whole.txt", "--model", tiny_model, "--seed", 6,
                        "-o", tmp_path / "whole_out.txt")
    assert result.returncode == 0 and "two measures as one" not in result.stderr
    whole = language.parse((tmp_path / "whole_out.txt").read_text())[0][0]
    assert language.split_measures(whole, pairing[1], "2/4").to_text() == (tmp_path / "out.txt").read_text().strip()


def test_a_melody_above_the_model_s_words_is_harmonized_lower_and_moved_back(tiny_model, tiny_dataset, tmp_path):
    """A chorale melody an octave up, given as score text: harmonized where the model has its
    words, written back at its own pitch, the same as harmonizing the moved melody and moving the
    result back; a text file that is not valid score text is a one-line error."""
    from scorelm import decoding, model_folder
    texts = training_texts(tiny_dataset)
    melody = language.parse(next(t for t in texts if t.count("K:") == 1))[0][0].top_voice().to_text()
    high = language.transpose_text(melody, "P8")
    (tmp_path / "high.txt").write_text(high + "\n")
    result = run_script("infer.py", "--harmonize", tmp_path / "high.txt", "--model", tiny_model, "--seed", 4,
                        "-o", tmp_path / "out.txt")
    assert result.returncode == 0, result.stderr
    _, tokenizer, card = model_folder.load(tiny_model)
    interval, shown = fitting.key_for_the_model(high, card, decoding.Vocabulary.from_tokenizer(tokenizer))
    assert f"harmonizing it {fitting.interval_words(interval)} and writing it back at its own pitch" in result.stderr
    pieces, report = language.parse((tmp_path / "out.txt").read_text())
    assert report.total == 0 and pieces[0].num_voices == 4
    assert pieces[0].voice_events(0) == language.parse(high)[0][0].voice_events(0)  # the melody as given
    (tmp_path / "shown.txt").write_text(shown + "\n")
    result = run_script("infer.py", "--harmonize", tmp_path / "shown.txt", "--model", tiny_model, "--seed", 4,
                        "-o", tmp_path / "shown_out.txt")
    assert result.returncode == 0 and "harmonizing it" not in result.stderr
    assert language.transpose_text((tmp_path / "shown_out.txt").read_text().strip(),
                                   language.inverse_interval(interval)) == (tmp_path / "out.txt").read_text().strip()
    (tmp_path / "bad.txt").write_text("| K:0 T:4/4 V1 C5:3 ||\n")  # a measure one beat short
    result = run_script("infer.py", "--harmonize", tmp_path / "bad.txt", "--model", tiny_model)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("infer.py: error: ") and "not valid score text" in result.stderr


def test_surprisal_covers_every_note(tiny_model, tmp_path):
    from music21 import corpus
    source = tmp_path / "bwv66.6.musicxml"
    corpus.parse("bach/bwv66.6").write("musicxml", fp=str(source))
    result = run_script("infer.py", "--surprisal", source, "--model", tiny_model)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "bwv66.6.surprisal.csv") as f:
        rows = list(csv.DictReader(f))
    piece = language.piece_from_score(language.read_score(source))
    assert len(rows) == sum(len(piece.voice_events(v)) for v in range(4))
    assert all(math.isfinite(float(r["surprisal_bits"])) and float(r["surprisal_bits"]) >= 0 for r in rows)
    assert all(0 <= float(r["information.content"]) <= float(r["surprisal_bits"]) + 1e-3 for r in rows)  # renormalised
    assert [r["voice"] for r in rows[:3]] == ["Soprano", "Soprano", "Alto"]  # the pickup: S has 2 notes, A 1
    assert rows[0]["measure"] == "0" and rows[0]["beat"] == "4.0" and rows[0]["pitch"] == "C#5"
    assert (tmp_path / "bwv66.6.surprisal.png").read_bytes()[:4] == b"\x89PNG"
    assert "bits per note" in result.stdout and "most surprising" in result.stdout and "entropy" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["hello"], "not in the score language"),
    (["| K:0 V1"], "prompt is not valid"),
    (["| K:0 T:4/4 V1 C4:0.125~"], "not in the model's vocabulary"),
    (["| K:0 T:4/4", "--key", "D"], "use them with the prompt '|'"),
    (["|", "--key", "H"], "--key"),
    (["|", "--time", "4/3"], "--time"),
    (["|", "--num-samples", "0"], "--num-samples"),
    (["--harmonize", "/no/such/melody.xml"], "no such file"),
    (["|", "--top-k", "-5"], "--top-k"),
    (["|", "--seed", "-1"], "--seed"),
    (["|", "--temperature", "inf"], "--temperature"),
    (["|", "--temperature", "nan"], "--temperature"),
])
def test_bad_input_is_one_line_error(tiny_model, args, message):
    result = run_script("infer.py", *args, "--model", tiny_model)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_missing_model(tmp_path):
    result = run_script("infer.py", "|", "--model", tmp_path / "none")
    assert result.returncode == 2 and "no trained model" in result.stderr


def test_continue_a_users_score(tiny_model, tiny_dataset, tmp_path):
    text = training_texts(tiny_dataset)[0]
    score_file = tmp_path / "mine.musicxml"
    language.score_from_piece(language.parse(text)[0][0]).write("musicxml", fp=str(score_file))
    result = run_script("infer.py", "--prompt-score", score_file, "--prompt-measures", 2, "--model", tiny_model,
                        "--seed", 1, "--max-new-tokens", 200)
    assert result.returncode == 0, result.stderr
    words = text.split()
    prompt = " ".join(words[:[i for i, w in enumerate(words) if w == "|"][2]])  # its first two measures
    assert_valid_samples(result.stdout, prompt, 1)


@pytest.mark.parametrize("budget", [30, 70])
def test_tight_token_budget_still_closes_the_piece(tiny_model, budget):
    """The decoder plans the end: rests, missing voices and || must fit in --max-new-tokens."""
    result = run_script("infer.py", "|", "--model", tiny_model, "--num-samples", 12, "--seed", 9,
                        "--max-new-tokens", budget)
    assert result.returncode == 0, result.stderr
    assert_valid_samples(result.stdout, "|", 12)


def test_a_new_piece_closes_within_the_models_context(tiny_model, tmp_path):
    """Beyond the positions a model was trained on its music falls apart, so by default a new
    piece is closed within them; a model saved before its config recorded that (2048 positions
    for any scratch model) is read with the length it was trained on."""
    import json
    import shutil

    from transformers import AutoTokenizer

    from scorelm import decoding, lm, model_folder
    context = json.loads((tiny_model / "train_config.json").read_text())["max_length"]
    assert json.loads((tiny_model / "config.json").read_text())["max_position_embeddings"] == context
    result = run_script("infer.py", "|", "--model", tiny_model, "--num-samples", 8, "--seed", 5)
    assert result.returncode == 0, result.stderr
    assert_valid_samples(result.stdout, "|", 8)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    lengths = [len(lm.piece_ids(tokenizer, sample)) for sample in result.stdout.splitlines()]
    # a last measure written again (to close on the tonic) gets MIN_NEW_TOKENS however long the piece
    assert max(lengths) <= 1 + context + decoding.MIN_NEW_TOKENS
    longer = run_script("infer.py", "|", "--model", tiny_model, "--num-samples", 8, "--seed", 5,
                        "--max-new-tokens", 4 * context)
    assert max(len(lm.piece_ids(tokenizer, s)) for s in longer.stdout.splitlines()) \
        > 1 + context + decoding.MIN_NEW_TOKENS  # asked for

    older = tmp_path / "older"
    shutil.copytree(tiny_model, older)
    config = json.loads((older / "config.json").read_text())
    (older / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))
    model, _, _ = model_folder.load(str(older))
    assert decoding.context_length(model) == context


def test_a_melody_note_the_model_has_no_word_for_is_harmonized_and_kept(tiny_model, tiny_dataset, tmp_path):
    """A melody whose last measure has a note under a fermata that the tiny model has no word for:
    the model is shown it as tied notes it knows, and the harmonization keeps the melody's own
    word (and a grace note the model does not know before it)."""
    from scorelm import decoding, model_folder
    _, tokenizer, _ = model_folder.load(tiny_model)
    known = decoding.Vocabulary.from_tokenizer(tokenizer)
    last = next(word for word in (f"{p}:4^" for p in ("G4", "A4", "F#4", "B4", "E4", "D5", "C5"))
                if word not in known.ids_of and fitting.tied_respelling(word, known))
    grace = next(f"{p}:0" for p in ("C#5", "Bb4", "D#5", "G#4") if f"{p}:0" not in known.ids_of)
    text = next(t for t in training_texts(tiny_dataset) if "T:4/4" in t.split()[:4] and t.count("T:") == 1)
    words = language.parse(text)[0][0].top_voice().to_text().split()
    last_bar = len(words) - 1 - words[::-1].index(language.BAR)
    melody = language.parse(" ".join(words[:last_bar]) + f" | V1 {grace} {last} ||")[0][0]
    assert language.validate(melody.to_text()) == []
    path = tmp_path / "melody.musicxml"
    language.score_from_piece(melody).write("musicxml", fp=str(path))
    result = run_script("infer.py", "--harmonize", path, "--model", tiny_model, "--seed", 2, "-o", tmp_path / "h.txt")
    assert result.returncode == 0, result.stderr
    written = (tmp_path / "h.txt").read_text()
    pieces, report = language.parse(written)
    assert report.total == 0, report.lines()
    assert pieces[0].voice_events(0) == melody.voice_events(0)
    assert f" V1 {grace} {last} V2 " in written


def test_tied_respelling():
    from scorelm import decoding, lm
    words = ["F#4:4^~", "F#4:2", "F#4:4~", "E5:1~", "E5:1", "R:4", "R:2^", "E5:0.5~"]
    known = decoding.Vocabulary.from_tokenizer(lm.train_word_tokenizer([" ".join(words)]))
    assert all(word in known.ids_of for word in words) and "F#4:6^" not in known.ids_of
    assert fitting.tied_respelling("F#4:6^", known) == ["F#4:4^~", "F#4:2"]  # the fermata where the note begins
    assert fitting.tied_respelling("E5:2~", known) == ["E5:1~", "E5:1~"]  # its own tie on the last
    assert fitting.tied_respelling("E5:3", known) == ["E5:1~", "E5:1~", "E5:1"]
    assert fitting.tied_respelling("R:6^", known) == ["R:2^", "R:4"]
    assert fitting.tied_respelling("D5:0", known) == []  # a grace note: left out of the model's view
    assert fitting.tied_respelling("G4:3", known) is None and fitting.tied_respelling("V1", known) is None


def test_shown_words_spell_a_pitch_otherwise_before_moving_a_melody():
    """A source's F flat or B sharp, which the model has no word for, is shown as the same key on
    the keyboard spelled as the model knows it (tied too), before any other spelling is tried."""
    from scorelm import decoding, lm
    words = ["E4:1", "C5:1~", "C5:1", "E4:2", "Fb4:2"]
    known = decoding.Vocabulary.from_tokenizer(lm.train_word_tokenizer([" ".join(words)]))
    assert fitting.shown_words("Fb4:1", known) == ["E4:1"]
    assert fitting.shown_words("B#4:2", known) == ["C5:1~", "C5:1"]  # spelled otherwise, then tied
    assert fitting.shown_words("Fb4:2", known) == ["Fb4:2"] and fitting.shown_words("E4:3", known) is None
    assert fitting.enharmonic_spellings("Cb5") == ("B4",) and fitting.enharmonic_spellings("C#5") == ("Db5",)


def test_joined_rhythm():
    """A note or rest no words of the model write, even tied, is joined to a neighbour: to the
    note rather than a rest, the longer note, the one it is tied to, keeping a fermata and a tie
    held into the measure."""
    from scorelm import decoding, lm
    words = ["C5:1", "D5:0.5", "C5:0.5", "G4:2^", "E5:1", "D5:1", "R:1"]
    known = decoding.Vocabulary.from_tokenizer(lm.train_word_tokenizer([" ".join(words)]))
    assert fitting.joined_rhythm(["C5:0.75", "R:0.25", "R:1"], known) == ["C5:1", "R:1"]  # a sixteenth rest
    assert fitting.joined_rhythm(["D5:0.375", "E5:0.125", "C5:0.5"], known) == ["D5:0.5", "C5:0.5"]  # dotted 16th, 32nd
    assert fitting.joined_rhythm(["R:0.25", "G4:1.75^"], known) == ["G4:2^"]  # the note's fermata kept
    assert fitting.joined_rhythm(["C5:0.25", "D5:0.75"], known) == ["D5:1"]  # the longer note
    assert fitting.joined_rhythm(["C5:0.25", "D5:0.75"], known, tied_in="C5") == ["C5:1"]  # a tie into it holds
    assert fitting.joined_rhythm(["E5:0.75~", "E5:0.25", "D5:1"], known) == ["E5:1", "D5:1"]  # its own continuation
    assert fitting.joined_rhythm(["C5:1", "D5:0.5"], known) == ["C5:1", "D5:0.5"]  # nothing to join
    assert fitting.joined_rhythm(["G#6:4^"], known) is None and fitting.joined_rhythm(["V2"], known) is None


def test_a_melody_rhythm_the_model_has_no_words_for_is_harmonized_and_kept(tiny_model, tiny_dataset, tmp_path):
    """A melody with a sixteenth rest the tiny model has no word for (nor any tied rests that
    write it): harmonized with the rest joined to the note before it, said on stderr, and the
    melody written as given, every voice filling every measure."""
    from scorelm import decoding, model_folder
    _, tokenizer, _ = model_folder.load(tiny_model)
    known = decoding.Vocabulary.from_tokenizer(tokenizer)
    rest = next(r for r in ("R:0.25", "R:0.125", "R:0.375") if r not in known.ids_of and not fitting.tied_respelling(r, known))
    text = next(t for t in training_texts(tiny_dataset) if "T:4/4" in t.split()[:4] and t.count("T:") == 1)
    short = language.parse_token(rest).duration
    measures = language.parse(text)[0][0].top_voice().to_text().split(" | ")  # the first holds the headers

    def fits(words):
        note = language.parse_token(words[1])
        return note.kind is language.Kind.NOTE and note.duration > short and not note.tie and not note.fermata
    index = next(i for i in range(1, len(measures) - 1) if fits(measures[i].split()))
    words = measures[index].split()
    note = language.parse_token(words[1])
    cut = f"{note.pitch}:{language.format_duration(note.duration - short)}"
    measures[index] = " ".join([words[0], cut, rest] + words[2:])
    melody = language.parse(" | ".join(measures))[0][0]
    assert language.validate(melody.to_text()) == [] and f"{cut} {rest}" in melody.to_text()
    assert fitting.melody_plan(melody, known)[index][1:] == words  # shown the measure as the chorale has it
    (tmp_path / "melody.txt").write_text(melody.to_text() + "\n")
    result = run_script("infer.py", "--harmonize", tmp_path / "melody.txt", "--model", tiny_model, "--seed", 5,
                        "-o", tmp_path / "h.txt")
    assert result.returncode == 0, result.stderr
    assert f"no words for 1 of the melody's notes and rests even as tied notes ({rest})" in result.stderr
    pieces, report = language.parse((tmp_path / "h.txt").read_text())
    assert report.total == 0, report.lines()
    assert pieces[0].voice_events(0) == melody.voice_events(0)  # the melody as given, its rest too
    assert pieces[0].num_voices == 4 and len(pieces[0].measures) == len(melody.measures)


def test_a_melody_note_no_known_words_can_write_is_a_one_line_error(tiny_model, tiny_dataset, tmp_path):
    """A pitch the model has never seen cannot be respelled: one line, exit 2, nothing written."""
    text = next(t for t in training_texts(tiny_dataset) if "T:4/4" in t.split()[:4] and t.count("T:") == 1)
    words = language.parse(text)[0][0].top_voice().to_text().split()
    last_bar = len(words) - 1 - words[::-1].index(language.BAR)
    melody = language.parse(" ".join(words[:last_bar]) + " | V1 G#6:4^ ||")[0][0]
    path = tmp_path / "melody.musicxml"
    language.score_from_piece(melody).write("musicxml", fp=str(path))
    output = tmp_path / "h.txt"
    result = run_script("infer.py", "--harmonize", path, "--model", tiny_model, "-o", output, "--render")
    assert result.returncode == 2
    assert result.stderr.strip() == "infer.py: error: the melody's 'G#6:4^' is not in the model's vocabulary"
    assert not output.exists() and not list(tmp_path.glob("h*"))


def test_quiet_rendering_says_nothing(tiny_model, tmp_path):
    """--quiet with --render: the pieces and their page written, and not a line on stderr (the
    rendering's progress bar was once left on)."""
    output = tmp_path / "s.txt"
    result = run_script("infer.py", "|", "--model", tiny_model, "--num-samples", 2, "--seed", 3,
                        "--max-new-tokens", 60, "--render", "--quiet", "-o", output)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert (tmp_path / "s.html").is_file() and len(list(tmp_path.glob("s-*.musicxml"))) == 2


def test_many_samples_are_written_in_batches_of_bounded_width(tiny_model):
    """--num-samples beyond one batch (64 sequences side by side): every piece written and valid,
    the first batch as a run of 64 writes it; --particles beyond a batch is a one-line error."""
    from scorelm import writing
    many = run_script("infer.py", "|", "--model", tiny_model, "--num-samples", writing.ROWS_PER_BATCH + 6,
                      "--seed", 3, "--max-new-tokens", 60, "--quiet")
    assert many.returncode == 0, many.stderr
    assert_valid_samples(many.stdout, "|", writing.ROWS_PER_BATCH + 6)
    one_batch = run_script("infer.py", "|", "--model", tiny_model, "--num-samples", writing.ROWS_PER_BATCH,
                           "--seed", 3, "--max-new-tokens", 60, "--quiet")
    assert many.stdout.splitlines()[:writing.ROWS_PER_BATCH] == one_batch.stdout.splitlines()
    assert many.stderr == ""  # --quiet: no bars, no notes
    too_wide = run_script("infer.py", "|", "--model", tiny_model, "--particles", writing.MAX_PARTICLES + 1)
    assert too_wide.returncode == 2 and too_wide.stderr.strip() == \
        f"infer.py: error: --particles must be at most {writing.MAX_PARTICLES}"


def test_melodies_harmonized_side_by_side_each_keep_their_own(tiny_model, tiny_dataset):
    """writing.harmonize_each (the scorecard's): melodies of different lengths in one batch, each
    harmonization a valid score holding its own melody note for note, in the melodies' order;
    longer than the tiny model's context, so written on in windows row by row."""
    from scorelm import melody, writing
    loaded = writing.LoadedModel.load(tiny_model, "cpu")
    texts = sorted(training_texts(tiny_dataset), key=len)
    chosen = [texts[0], texts[len(texts) // 2], texts[-1], texts[1]]
    pieces = [language.parse(text)[0][0] for text in chosen]
    fits = [melody.fit(text, loaded.card, loaded.vocabulary) for text in chosen]
    settings = loaded.settings(rules="mixed", particles=2)
    harmonized = writing.harmonize_each(loaded, pieces, fits, settings, seed=5)
    assert len(harmonized) == len(pieces)
    for text, piece in zip(harmonized, pieces):
        written, report = language.parse(text)
        assert report.total == 0 and len(written) == 1
        assert written[0].voice_events(0) == piece.top_voice().voice_events(0)
        assert written[0].num_voices == 4
    assert harmonized == writing.harmonize_each(loaded, pieces, fits, settings, seed=5)  # the seed repeats
