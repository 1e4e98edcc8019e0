"""Analysis: information content and entropy per note read back from the written CSV, the
held-out rule of cross-validated models, melody corpora, IDyOM's protocol's means, bad input."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import run_script, write_config

from scorelm import dataset, language
from scorelm.analysis import folds, idyom, information


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def melody_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("melodies") / "dataset"
    result = run_script("generate_data.py", "--melody", "--limit", "30", "--output", folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture(scope="module")
def melody_folds(tmp_path_factory, melody_dataset):
    folder = tmp_path_factory.mktemp("cv")
    config = write_config(folder, dataset=str(melody_dataset), output_dir=str(folder / "cv"), max_steps=8, folds=3)
    result = run_script("train.py", "--config", config)
    assert result.returncode == 0, result.stderr
    return folder / "cv"


def test_information_content_and_entropy_read_back_from_the_csv(tiny_model, tmp_path):
    """Every note's pitch probabilities, written with --distributions, sum to 1 over the pitches
    the model could write there, and its pitch IC is -log2 of the written pitch's; the event IC
    is -log2 of the event's probability; a tie's second note has pitch IC 0 (its pitch is forced)."""
    from music21 import corpus
    source = tmp_path / "bwv10.7.musicxml"  # ties across bar lines
    corpus.parse("bach/bwv10.7").write("musicxml", fp=str(source))
    result = run_script("infer.py", "--surprisal", source, "--model", tiny_model, "--distributions")
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / "bwv10.7.surprisal.csv")
    piece = language.parse(language.encode_score(corpus.parse("bach/bwv10.7")))[0][0]
    assert len(rows) == len([w for w, where in piece.annotated_words() if where is not None])
    pitched = [r for r in rows if r["pitch"] != "rest"]
    assert pitched and all(r["cpitch"] == str(language.midi_number(r["pitch"])) for r in pitched)
    for row in pitched:
        distribution = {int(k.split(".")[1]): float(v) for k, v in row.items()
                        if k.startswith("cpitch.") and k.split(".")[1].isdigit() and v != ""}
        assert abs(sum(distribution.values()) - 1) < 1e-5
        assert float(row["cpitch.information.content"]) == pytest.approx(
            -math.log2(distribution[int(row["cpitch"])]), abs=2e-4)
        entropy = -sum(p * math.log2(p) for p in distribution.values() if p > 0)
        assert float(row["cpitch.entropy"]) == pytest.approx(entropy, abs=1e-3)
    for row in rows:
        assert float(row["information.content"]) == pytest.approx(-math.log2(float(row["probability"])), abs=1e-3)
        assert float(row["entropy"]) > 0 and row["alphabet"] in ("grammar", "events")
    ties = [r for r in rows if r["continues.tie"] == "True"]
    assert ties and all(float(r["cpitch.information.content"]) == 0 for r in ties if r["alphabet"] == "grammar")
    assert all(r["cpitch.information.content"] == "" for r in rows if r["pitch"] == "rest")


def test_information_sums_over_words_match_the_model(tiny_model):
    """Under the grammar's renormalisation no word's information content exceeds the model's own
    bits for it, and the pitch's never exceeds the event's (a pitch sums over its words)."""
    from scorelm import model_folder
    model, tokenizer, _ = model_folder.load(tiny_model)
    from music21 import corpus
    piece = language.piece_from_score(corpus.parse("bach/bwv66.6"))
    notes = information.note_information(piece, tokenizer, information.model_predictor(model))
    assert all(n.information_content <= n.surprisal_bits + 1e-6 for n in notes if n.known_word)
    assert all(n.pitch_information_content <= n.information_content + 1e-6 for n in notes
               if n.pitch is not None and n.known_word and n.alphabet == "grammar")
    summary = information.summarize(notes)
    assert summary.events == sum(not n.continues_tie for n in notes) and summary.notes <= summary.events


def test_melody_corpus_is_the_top_voice(melody_dataset):
    from music21 import corpus
    records = [r for split in dataset.SPLITS for r in dataset.read_jsonl(melody_dataset / f"{split}.jsonl")]
    assert len(records) == 30 and all(r["voices"] == 1 for r in records)
    record = records[0]
    full = language.parse(language.encode_score(corpus.parse(record["source"])))[0][0]
    assert record["text"] == dataset.melody_of(full).to_text()
    assert [e for m in language.parse(record["text"])[0][0].measures for e in m.voices[0]] == \
        [e for m in full.measures for e in m.voices[0]]


def test_cross_validated_analysis_uses_the_model_that_held_the_piece_out(melody_folds, melody_dataset, tmp_path):
    manifest = json.loads((melody_folds / folds.MANIFEST).read_text())
    assert manifest["folds"] == 3 and manifest["pieces"] == 30
    held = [set(m["held_out"]) for m in manifest["models"]]
    assert set.union(*held) == {r["id"] for s in dataset.SPLITS for r in dataset.read_jsonl(melody_dataset / f"{s}.jsonl")}
    assert sum(len(h) for h in held) == 30  # disjoint
    for model in manifest["models"]:  # each fold model trained without its fold
        trained = json.loads((melody_folds / model["name"] / "metrics.json").read_text())
        assert trained["validation"]["bits_per_note"] > 0
    records = {r["id"]: r for s in dataset.SPLITS for r in dataset.read_jsonl(melody_dataset / f"{s}.jsonl")}
    # the pieces as users have them: four-part scores, of which a melody model analyses the top voice
    from music21 import corpus
    scores = tmp_path / "scores"
    scores.mkdir()
    chosen = [manifest["models"][0]["held_out"][0], manifest["models"][2]["held_out"][1]]
    for record_id in chosen:
        corpus.parse(records[record_id]["source"]).write("musicxml", fp=str(scores / f"{record_id}.musicxml"))
    corpus.parse("bach/bwv438").write("musicxml", fp=str(scores / "unseen.musicxml"))  # not among the 30
    result = run_script("infer.py", "--surprisal", scores, "--model", melody_folds)
    assert result.returncode == 0, result.stderr
    assert "no fold held out unseen" in result.stderr and "melody model" in result.stderr
    rows = read_csv(tmp_path / "scores.surprisal.csv")
    by_piece = {}
    for row in rows:
        by_piece.setdefault(row["melody.name"], set()).add((row["model"], row["held.out"]))
    for record_id in chosen:
        (model_name, held_out), = by_piece[record_id]
        assert held_out == "True"
        model = next(m for m in manifest["models"] if m["name"] == model_name)
        assert record_id in model["held_out"] and folds.text_key(records[record_id]["text"]) in model["held_out_keys"]
    assert by_piece["unseen"] == {(m["name"], "False") for m in manifest["models"]}
    table = read_csv(tmp_path / "scores.pieces.csv")
    assert len(table) == 2 + 3 and all(float(r["mean.cpitch.information.content"]) > 0 for r in table)


def test_fold_assignment_is_deterministic_and_keeps_duplicates_together():
    records = [{"id": f"p{i}", "text": f"| K:0 T:4/4 V1 C4:{i % 7 + 1} ||"} for i in range(40)]
    dealt = folds.assign_folds(records, 4, 42)
    assert dealt == folds.assign_folds(list(reversed(records)), 4, 42)
    for text in {r["text"] for r in records}:
        assert sum(any(r["text"] == text for r in fold) for fold in dealt) == 1
    assert sorted(len(f) for f in dealt)[-1] - sorted(len(f) for f in dealt)[0] <= 6  # groups of up to 6


@pytest.mark.parametrize("folds_value, message", [(1, "at least 2"), (31, "number of distinct pieces")])
def test_bad_fold_counts_are_one_line_errors(melody_dataset, tmp_path, folds_value, message):
    config = write_config(tmp_path, dataset=str(melody_dataset), output_dir=str(tmp_path / "out"), folds=folds_value)
    result = run_script("train.py", "--config", config)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_fold_models_without_a_manifest_and_scores_without_notes(melody_folds, tmp_path):
    import shutil
    copy = tmp_path / "cv"
    shutil.copytree(melody_folds, copy)
    (copy / folds.MANIFEST).unlink()
    from music21 import corpus
    source = tmp_path / "bwv66.6.musicxml"
    corpus.parse("bach/bwv66.6").write("musicxml", fp=str(source))
    result = run_script("infer.py", "--surprisal", source, "--model", copy)
    assert result.returncode == 2 and "no folds.json" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "bwv66.6.surprisal.csv").exists()
    silent = tmp_path / "silence.txt"
    silent.write_text("| K:0 T:4/4 V1 R:4 ||\n")
    result = run_script("infer.py", "--surprisal", silent, "--model", melody_folds)
    assert result.returncode == 2 and "no notes" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.glob("silence.*")) == [silent]


def test_idyom_data_and_protocol_means():
    sources = idyom.chorale_melody_sources()
    assert len(sources) == 186 and sources[0].startswith("bach/bwv253") and sources[-1].startswith("bach/bwv438")
    assert len({s.split(".")[0] for s in sources}) == 186
    text = "| K:0 T:4/4 V1 C4:1 D4:1 E4:2~ | V1 E4:1 R:1 G4:2 ||"
    assert idyom.onset_pitches(text) == [60, 62, 64, 67]  # the tied E once, the rest left out
    assert idyom.tune_signature(text, 3) == (2, 2, 3) and idyom.tune_signature(text, 4) is None
    moved = "| K:2 T:4/4 V1 D4:1 E4:1 F#4:2 | V1 A4:4 ||"  # the same beginning a tone higher
    kept, left_out = idyom.without_tunes_like([{"text": moved}, {"text": "| K:0 T:4/4 V1 C4:1 C4:1 C4:1 C4:1 ||"}],
                                              [text], 3)
    assert left_out == 1 and kept[0]["text"].endswith("C4:1 ||")
    result = idyom.FoldResult()
    result.add_fold([[1.0, 3.0], [2.0]])
    result.add_fold([[4.0]])
    assert result.mean_of_folds == pytest.approx((2.0 + 4.0) / 2)
    assert result.mean_per_note == pytest.approx(10 / 4)
    assert result.mean_of_melodies == pytest.approx((2 + 2 + 4) / 3)


def test_ngram_baseline_gives_pitch_distributions_that_sum_to_one(melody_dataset):
    records = [r for s in dataset.SPLITS for r in dataset.read_jsonl(melody_dataset / f"{s}.jsonl")][:12]
    from scorelm import decoding, lm
    from scorelm.evaluation import KneserNey, token_stream
    tokenizer = lm.train_word_tokenizer([r["text"] for r in records])
    ngram = KneserNey(3, len(tokenizer)).fit(token_stream(tokenizer, [r["text"] for r in records[1:]]))
    notes = information.note_information(language.parse(records[0]["text"])[0][0], tokenizer,
                                         information.ngram_predictor(ngram, len(tokenizer)),
                                         decoding.Vocabulary.from_tokenizer(tokenizer), keep_distributions=True)
    assert all(abs(sum(n.pitch_distribution.values()) - 1) < 1e-9 for n in notes if n.pitch)
    result = idyom.score(idyom.ngram_cross_validated(records, folds.assign_folds(records, 3, 42)))
    assert len(result.per_fold) == 3 and 0 < result.mean_of_folds < 10 and result.notes > 100


def test_an_interrupted_cross_validation_resumes_where_it_stopped(melody_folds, tmp_path):
    """Folds already trained are kept as they are; a fold whose model is missing is trained."""
    import shutil
    copy = tmp_path / "cv"
    shutil.copytree(melody_folds, copy)
    shutil.rmtree(copy / "fold-02")
    kept = (copy / "fold-01" / "model.safetensors").read_bytes()
    config = json.loads((melody_folds / "fold-01" / "train_config.json").read_text())
    config.update(output_dir=str(copy), folds=3)
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    again = run_script("train.py", "--config", tmp_path / "cfg.json")
    assert again.returncode == 2 and "--resume" in again.stderr  # nothing replaced silently
    result = run_script("train.py", "--config", tmp_path / "cfg.json", "--resume")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("trained already") == 2 and (copy / "fold-02" / "metrics.json").is_file()
    assert (copy / "fold-01" / "model.safetensors").read_bytes() == kept
    assert json.loads((copy / folds.MANIFEST).read_text()) == json.loads((melody_folds / folds.MANIFEST).read_text())
    assert len(json.loads((copy / "cross_validation.json").read_text())["held_out_bits_per_note"]) == 3


def test_short_term_model_is_pearces_ppm_and_combination_weights_the_surer_model():
    """IDyOM's short-term model (PPM*, escape C, interpolated) by hand on a short melody, and
    Pearce's entropy-weighted combination."""
    from scorelm.analysis import ppm
    alphabet = [60, 62, 64, 65, 67]
    rows = ppm.short_term_distributions([60, 62, 64, 60, 62], alphabet)
    assert np.allclose(rows.sum(1), 1) and np.allclose(rows[0], 0.2)  # nothing heard yet: uniform
    # before the 2nd note: only 60 heard (order 0, deterministic): 1/2 * 1 + 1/2 * uniform
    assert rows[1][0] == pytest.approx(0.5 + 0.5 * 0.2)
    # before the 5th note (after 60 62 64 60): the context 60 was followed by 62 once (order 1,
    # the shortest deterministic context), blended down through order 0 (60 twice, 62, 64 once
    # each: escape C gives the order 4/7) and the uniform order -1
    order0 = 4 / 7 * np.array([2, 1, 1, 0, 0]) / 4 + 3 / 7 * 0.2
    expected = 0.5 * np.array([0, 1, 0, 0, 0]) + 0.5 * order0
    assert np.allclose(rows[4], expected / expected.sum())
    sure, unsure = np.array([0.9, 0.05, 0.05]), np.array([1 / 3] * 3)
    assert ppm.relative_entropy(unsure) == pytest.approx(1.0)
    assert np.allclose(ppm.combine([sure, unsure], 0), (sure + unsure) / 2)  # bias 0: a plain mean
    weight = ppm.relative_entropy(sure) ** -2
    assert np.allclose(ppm.combine([sure, unsure], 2), (weight * sure + unsure) / (weight + 1))
    geometric = ppm.combine([sure, unsure], 0, geometric=True)
    assert np.allclose(geometric, np.sqrt(sure * unsure) / np.sqrt(sure * unsure).sum())


def test_idyom_score_alone_and_with_the_short_term_model():
    """The benchmark's means read the pitch distributions it keeps: alone, -log2 of the note's
    probability; combined, the short-term model lowers the information content of a repeated
    phrase that the long-term model finds surprising."""
    flat = {p: 1 / 5 for p in (60, 62, 64, 65, 67)}
    phrase = [60, 64, 62, 67]
    melody = [(p, dict(flat)) for p in phrase * 3]
    alone = idyom.score([[melody]])
    assert alone.mean_of_folds == pytest.approx(math.log2(5)) and alone.notes == 12
    combined = idyom.score([[melody]], [60, 62, 64, 65, 67])
    assert combined.notes == 12 and combined.mean_of_folds < alone.mean_of_folds - 0.5
    assert idyom.pitch_alphabet([{"text": "| K:0 T:4/4 V1 C4:1 D4:1 E4:2~ | V1 E4:1 R:1 G4:2 ||"}]) == [60, 62, 64, 67]


def test_short_term_option_combines_each_voice_with_its_short_term_model(tiny_model, tmp_path):
    """--short-term's pitch distributions, read back from the CSV, are the model's (the plain
    run's CSV) combined with a PPM model of the voice's notes so far over the piece's pitches,
    as IDyOM combines its long- and short-term models; the event measures are unchanged."""
    from music21 import corpus
    from scorelm.analysis import ppm
    source = tmp_path / "bwv10.7.musicxml"
    corpus.parse("bach/bwv10.7").write("musicxml", fp=str(source))
    for extra, stem in (([], "plain"), (["--short-term"], "combined")):
        result = run_script("infer.py", "--surprisal", source, "--model", tiny_model, "--distributions",
                            "-o", tmp_path / f"{stem}.csv", *extra)
        assert result.returncode == 0, result.stderr
    plain, combined = read_csv(tmp_path / "plain.surprisal.csv"), read_csv(tmp_path / "combined.surprisal.csv")

    def distribution(row):
        return {int(k.split(".")[1]): float(v) for k, v in row.items()
                if k.startswith("cpitch.") and k.split(".")[1].isdigit() and v != ""}

    assert [r["information.content"] for r in plain] == [r["information.content"] for r in combined]
    alphabet = sorted({int(r["cpitch"]) for r in plain if r["cpitch"] and not r["word"].startswith("+")})
    for voice in ("Soprano", "Alto", "Tenor", "Bass"):
        melody = [(p, c) for p, c in zip(plain, combined) if p["voice"] == voice and p["cpitch"]
                  and p["continues.tie"] == "False" and float(p["dur"]) > 0 and not p["word"].startswith("+")]
        assert len(melody) > 20 and all(c["cpitch.model"] == "model+short-term" for _, c in melody)
        expected = ppm.with_short_term([int(p["cpitch"]) for p, _ in melody], [distribution(p) for p, _ in melody],
                                       alphabet, ppm.PEARCE_BIAS)
        for (_, row), want in zip(melody, expected):
            got = distribution(row)
            assert abs(sum(got.values()) - 1) < 1e-5
            assert all(got.get(p, 0) == pytest.approx(q, abs=1e-6) for p, q in want.items())
            assert float(row["cpitch.information.content"]) == pytest.approx(
                -math.log2(got[int(row["cpitch"])]), abs=2e-4)
    assert all(r["cpitch.model"] == "model" for r in plain if r["cpitch"])
