"""generate_data.py end to end: the whole corpus once, user files, bad input."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import run_script

from scorelm import dataset, language


@pytest.fixture(scope="module")
def corpus_dataset(tmp_path_factory):
    """The default run over the whole chorale corpus, with transposition."""
    output = tmp_path_factory.mktemp("dataset")
    result = run_script("generate_data.py", "--output", output, "--transpose")
    assert result.returncode == 0, result.stderr
    return output, result


def test_corpus_dataset_splits(corpus_dataset):
    output, result = corpus_dataset
    splits = {name: dataset.read_jsonl(output / f"{name}.jsonl") for name in dataset.SPLITS}
    originals = {name: [r for r in records if r["transposition"] == "P1"] for name, records in splits.items()}
    assert sum(len(r) for r in originals.values()) == 412
    assert [len(originals[n]) for n in ("validation", "test")] == [41, 41]
    # duplicates (identical text) never straddle two splits
    text_split = {}
    for name, records in originals.items():
        for record in records:
            assert text_split.setdefault(record["text"], name) == name
    assert len(text_split) < 412  # the corpus does hold duplicates
    # transposed copies only in train, each a valid piece in a new key
    transposed = [r for name in ("validation", "test") for r in splits[name] if r["transposition"] != "P1"]
    assert transposed == []
    copies = [r for r in splits["train"] if r["transposition"] != "P1"]
    assert len(copies) > 3 * len(originals["train"])
    for record in copies[::50]:
        pieces, report = language.parse(record["text"])
        assert report.total == 0
        assert pieces[0].measures[0].key == record["key_signature"]
        assert record["tokens"] == len(record["text"].split())
    summary = json.loads((output / "summary.json").read_text())
    assert summary["pieces"] == 412 and summary["skipped"] == 0
    assert summary["tokens_per_piece"]["median"] <= 400
    assert summary["pieces_within_1024_tokens"] >= 0.99
    assert "tokens per piece" in result.stderr and "median" in result.stderr


def test_record_fields_and_voice_ranges(corpus_dataset):
    output, _ = corpus_dataset
    record = next(r for r in dataset.read_jsonl(output / "train.jsonl") if r["id"] == "bwv1.6")
    assert record["source"] == "bach/bwv1.6.mxl"
    assert (record["key"], record["key_signature"], record["time_signature"]) == ("F major", -1, "4/4")
    assert record["voices"] == 4 and record["measures"] == 21
    soprano_low, soprano_high = record["voice_ranges"][0]
    assert 60 <= soprano_low < soprano_high <= 81


def test_loadable_with_datasets(corpus_dataset):
    import datasets
    output, _ = corpus_dataset
    loaded = datasets.load_dataset("json", data_files={n: str(output / f"{n}.jsonl") for n in dataset.SPLITS})
    assert loaded["test"].num_rows == 41 and "text" in loaded["test"].column_names


def test_split_is_deterministic_and_seedable():
    records = [{"id": str(i), "text": f"t{i % 90}", "transposition": "P1"} for i in range(100)]
    first = dataset.split_records(records, (0.8, 0.1, 0.1), seed=1)
    again = dataset.split_records(list(reversed(records)), (0.8, 0.1, 0.1), seed=1)
    other = dataset.split_records(records, (0.8, 0.1, 0.1), seed=2)
    assert first == again and first != other
    assert {n: len(v) for n, v in first.items()}["validation"] in (10, 11)
    for name, part in first.items():  # a text's copies stay together
        for record in part:
            twins = [r for r in records if r["text"] == record["text"]]
            assert all(t in part for t in twins)


def test_transposition_keeps_voices_in_range():
    text = "| K:0 T:2/4 V1 C5:2 V2 G4:2 V3 E4:2 V4 C3:2 ||"
    record = dataset.record_for(language.parse(text)[0][0], "x", "x", "C major")
    ranges = [(60, 74), (55, 69), (48, 67), (40, 60)]
    copies = dataset.transposed_records(record, ranges)
    shifts = sorted(language.midi_number(c["text"].split()[4].split(":")[0]) - 72 for c in copies)
    assert shifts == [-5, -4, -3, -2, -1, 1, 2]  # soprano C5 may go up to D5 only
    assert Counter(c["key_signature"] for c in copies) == Counter([1, -4, 3, -2, 5, -5, 2])


def _write_user_scores(folder):
    from music21 import corpus, stream
    chorale = corpus.parse("bach/bwv66.6.mxl")
    three = stream.Score([chorale.parts[i] for i in range(3)])
    three.write("musicxml", fp=str(folder / "three_parts.musicxml"))
    chorale.write("midi", fp=str(folder / "chorale.mid"))
    (folder / "tune.abc").write_text("X:1\nT:Tune\nM:3/4\nL:1/4\nK:G\nG A B | c2 B | A3 |]\n")
    (folder / "broken.musicxml").write_text("<score-partwise><part>")
    (folder / "notes.txt").write_text("not a score")  # not a score suffix: not picked up


def test_user_files(tmp_path):
    scores = tmp_path / "scores"
    scores.mkdir()
    _write_user_scores(scores)
    result = run_script("generate_data.py", "--input", scores, "--output", tmp_path / "out", "--split", "1/0/0")
    assert result.returncode == 0, result.stderr
    assert "warning: skipped" in result.stderr and "broken.musicxml" in result.stderr
    records = {r["id"]: r for r in dataset.read_jsonl(tmp_path / "out" / "train.jsonl")}
    assert set(records) == {"three_parts", "chorale", "tune"}
    assert records["three_parts"]["voices"] == 3  # a user's score keeps its parts
    assert records["tune"]["voices"] == 1 and records["tune"]["time_signature"] == "3/4"
    assert records["tune"]["key_signature"] == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["skipped"] == 1 and summary["pieces"] == 3


@pytest.mark.parametrize("args, message", [
    (["--input", "no/such/folder"], "no such file or folder"),
    (["--split", "80/20"], "--split takes"),
    (["--limit", "0"], "none of the 0 files"),
    (["--corpus", "montverdi"], "did you mean monteverdi"),
    (["--corpus", "bach", "--input", "x.xml"], "give one of them"),
    (["--split", "nan/1/1"], "--split takes"),
    (["--split", "inf/1/1"], "--split takes"),
    (["--workers", "-1"], "--workers must be at least 1"),
])
def test_bad_input_is_one_line_error(tmp_path, args, message):
    result = run_script("generate_data.py", "--output", tmp_path / "out", *args)
    assert result.returncode == 2  # bad input, whatever it is: exit 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) < 200 and not (tmp_path / "out").exists()


def test_refuses_to_overwrite(tmp_path):
    out = tmp_path / "out"
    assert run_script("generate_data.py", "--output", out, "--limit", "5").returncode == 0
    before = (out / "train.jsonl").read_text()
    result = run_script("generate_data.py", "--output", out, "--limit", "3")
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (out / "train.jsonl").read_text() == before
    assert run_script("generate_data.py", "--output", out, "--limit", "3", "--overwrite").returncode == 0


def test_corpus_folders(tmp_path):
    """--corpus list names music21's folders with their file counts; --corpus NAME encodes one,
    and a file holding many scores (an ABC collection) gives one piece per score."""
    listed = run_script("generate_data.py", "--corpus", "list")
    assert listed.returncode == 0
    counts = {line.split()[0]: int(line.split()[1]) for line in listed.stdout.splitlines()}
    assert counts["palestrina"] > 1000 and counts["monteverdi"] > 40 and counts["bach"] > 400
    result = run_script("generate_data.py", "--corpus", "monteverdi", "--limit", 4, "--output", tmp_path / "mv")
    assert result.returncode == 0, result.stderr
    records = [r for name in dataset.SPLITS for r in dataset.read_jsonl(tmp_path / "mv" / f"{name}.jsonl")]
    assert len(records) == 4 and all(r["source"].startswith("monteverdi/") for r in records)
    assert all(r["voices"] == 5 for r in records)  # five-voice madrigals: the Quinto part book too
    result = run_script("generate_data.py", "--corpus", "essenFolksong", "--limit", 1, "--output", tmp_path / "ef")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "ef" / "summary.json").read_text())
    assert summary["pieces"] > 100 and summary["skipped"] == 0  # one collection file, a piece per tune


def _pitched_notes(text: str) -> int:
    piece = language.parse(text)[0][0]
    return sum(len(event.pitches) for measure in piece.measures for voice in measure.voices for event in voice)


def test_a_choir_with_piano_keeps_its_piano(tmp_path):
    """Issue 30: a user's choir with piano keeps every note of it (Beach's Prayer of a Tired Child:
    four soprano and alto parts and a piano; Liliuokalani's Aloha 'Oe: SATB, a solo voice and a
    piano), the piano as a part of two staves; --instruments voices drops the piano as the
    chorales' rule does."""
    from music21 import corpus
    sources = {name: corpus.getWork(work) for name, work in
               (("prayer_of_a_tired_child", "beach/prayer_of_a_tired_child"), ("aloha_oe", "liliuokalani/aloha_oe"))}
    totals = {name: sum(len(n.pitches) for n in corpus.parse(str(path)).flatten().notes)
              for name, path in sources.items()}
    assert totals == {"prayer_of_a_tired_child": 1089, "aloha_oe": 463}
    for mode in ("default", "voices"):
        output = tmp_path / mode
        result = run_script("generate_data.py", "--input", *sources.values(), "--output", output, "--split",
                            "1/0/0", *(["--instruments", mode] if mode != "default" else []))
        assert result.returncode == 0, result.stderr
        records = {r["id"]: r for r in dataset.read_jsonl(output / "train.jsonl")}
        for name, total in totals.items():
            text = records[name]["text"]
            if mode == "default":
                assert _pitched_notes(text) == total, name  # every note kept
                assert "P:1/2" in text.split(" V1 ")[0] or "P:2/2" in text.split(" V1 ")[0]  # the piano's staves
            else:
                assert _pitched_notes(text) < total / 2 and records[name]["voices"] == 4


def test_an_instrument_doubling_a_voice_is_dropped_and_one_of_its_own_kept():
    """--instruments doubling (the default for your scores): a violin playing the soprano's notes
    an octave higher (colla parte) goes, a flute with a line of its own stays; the chorales'
    rule (voices) drops both; all keeps both."""
    from music21 import note, stream
    score = stream.Score()
    line = ["C5", "D5", "E5", "F5", "G5", "F5", "E5", "D5"]
    own = ["G5", "A5", "B5", "C6", "D6", "E6", "F6", "G6"]
    for name, pitches in (("Soprano", line), ("Alto", ["A4"] * 8), ("Tenor", ["E4"] * 8), ("Bass", ["A3"] * 8),
                          ("Violin", [p[:-1] + str(int(p[-1]) + 1) for p in line]), ("Flute", own)):
        part = stream.Part()
        part.partName = name
        for pitch in pitches:
            part.append(note.Note(pitch, quarterLength=1))
        score.append(part)
    kept = {mode: [staff.partName for staff in language.select_parts(score, mode)] for mode in language.INSTRUMENTS}
    assert kept == {"doubling": ["Soprano", "Alto", "Tenor", "Bass", "Flute"],
                    "voices": ["Soprano", "Alto", "Tenor", "Bass"],
                    "all": ["Soprano", "Alto", "Tenor", "Bass", "Violin", "Flute"]}
    stats = language.EncodeStats()
    assert language.piece_from_score(score, stats, "doubling").num_voices == 5
    assert stats.counts["instrument staves doubling a voice dropped"] == 1
