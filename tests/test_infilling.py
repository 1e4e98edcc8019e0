"""Training for infilling (infilling.py, train_cfg's infill_share): a span of whole measures moved
to the end after two sentinels, undone exactly; the share and the spans as the seed says; a model
trained so holds the sentinels and says so in its card; bad settings are one-line errors."""
from __future__ import annotations

import json
import random

import pytest
from conftest import local_pretrained_model, run_script, write_config

from scorelm import infilling, language, lm, model_folder


@pytest.fixture(scope="module")
def tokenizer(chorale_texts):
    tokenizer = lm.train_word_tokenizer(list(chorale_texts.values()))
    assert infilling.add_sentinels(tokenizer) == len(infilling.SENTINELS) and infilling.add_sentinels(tokenizer) == 0
    return tokenizer


def words_of(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens(ids)


def test_every_span_of_a_chorale_moves_and_comes_back(tokenizer, chorale_texts):
    """Every span of whole measures of a real chorale (pickup, ties over the bar lines): the
    rearranged sequence is <eos> <suffix> after <middle> before <measures:N> span, N the span's
    measures, what follows <middle> is the piece from its start to the span's end with the
    length word where the span begins, the close stays with the music after it, and undoing it
    gives the piece back token for token; a span longer than MAX_SPAN has no length word and is
    refused."""
    sentinels = infilling.sentinel_ids(tokenizer)
    suffix_id, middle_id = sentinels.suffix, sentinels.middle
    bar, end = lm.bar_token_id(tokenizer), lm.word_id(tokenizer, language.END)
    text = chorale_texts["bach/bwv66.6.mxl"]
    ids = lm.piece_ids(tokenizer, text)
    measures = text.split().count(language.BAR)
    assert len(infilling.measure_starts(ids, bar)) == measures
    assert measures > infilling.MAX_SPAN
    spans = 0
    for first in range(measures):
        for last in range(first + 1, min(first + infilling.MAX_SPAN, measures) + 1):
            moved = infilling.rearranged(ids, (first, last), bar, end, sentinels)
            assert len(moved) == len(ids) + 3 and moved[0] == tokenizer.eos_token_id
            assert words_of(tokenizer, moved[1:2]) == ["<suffix>"]
            middle = moved[moved.index(middle_id) + 1:]
            at = infilling.measure_starts(ids, bar)[first] - 1  # where the length word stands in the middle
            assert words_of(tokenizer, [middle[at]]) == [f"<measures:{last - first}>"]
            middle = middle[:at] + middle[at + 1:]
            assert middle == ids[1:len(middle) + 1] and middle.count(bar) == last and end not in middle
            suffix = moved[moved.index(suffix_id) + 1:moved.index(middle_id)]
            assert suffix[-1] == end and suffix.count(bar) == measures - last
            assert infilling.restored(moved, sentinels) == ids
            spans += 1
    assert spans > 50
    for span in ((3, measures + 1), (0, infilling.MAX_SPAN + 1)):
        with pytest.raises(ValueError):
            infilling.rearranged(ids, span, bar, end, sentinels)


def test_the_share_and_the_spans_are_the_seeds(tokenizer, chorale_texts):
    """With share 0.5 about half the pieces are rearranged, the same ones and the same spans for
    the same seed; spans are 1 to MAX_SPAN measures and leave a measure outside; share 0 changes
    nothing and share 1 rearranges every piece of two measures or more."""
    sentinels = infilling.sentinel_ids(tokenizer)
    suffix_id, middle_id = sentinels.suffix, sentinels.middle
    bar, end = lm.bar_token_id(tokenizer), lm.word_id(tokenizer, language.END)
    pieces = [lm.piece_ids(tokenizer, text) for text in chorale_texts.values()] * 40
    args = (bar, end, sentinels)
    half, moved = infilling.training_pieces(pieces, 0.5, 7, *args)
    assert 0.35 * len(pieces) < len(moved) < 0.65 * len(pieces)
    assert moved == {index for index, (original, shown) in enumerate(zip(pieces, half)) if shown != original}
    assert infilling.training_pieces(pieces, 0.5, 7, *args) == (half, moved)
    assert infilling.training_pieces(pieces, 0.5, 8, *args)[0] != half
    assert infilling.training_pieces(pieces, 0.0, 7, *args) == (pieces, set())
    assert infilling.training_pieces(pieces, 1.0, 7, *args)[1] == set(range(len(pieces)))
    for original, shown in zip(pieces, half):
        if shown != original:
            assert infilling.restored(shown, sentinels) == original
            middle = shown[shown.index(middle_id) + 1:]
            suffix = shown[shown.index(suffix_id) + 1:shown.index(middle_id)]
            assert middle.count(bar) >= 1 and middle.count(bar) + suffix.count(bar) == original.count(bar)
            words = [token for token in middle if token in sentinels.lengths]
            assert len(words) == 1
            span = middle[middle.index(words[0]) + 1:]
            assert span[0] == bar and span.count(bar) == sentinels.lengths.index(words[0]) + 1
    rng = random.Random(0)
    assert infilling.random_span(1, rng) is None
    assert all(0 <= a < b <= 5 and b - a <= 4 for a, b in (infilling.random_span(5, rng) for _ in range(200)))


def test_a_model_trained_to_infill_holds_the_sentinels_and_says_so(tmp_path, tiny_dataset):
    """train.py with infill_share: the tokenizer holds <suffix> and <middle> as single tokens, the
    card records the share, and the log says how many pieces were rearranged; without it,
    neither sentinel and a share of 0."""
    out = tmp_path / "infill"
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), max_steps=4, eval_every=0,
                          infill_share=1.0)
    result = run_script("train.py", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "infilling:" in result.stderr and "training pieces shown with the music after a span" in result.stderr
    model, tokenizer, card = model_folder.load(out)
    assert card.infill_share == 1.0 and infilling.sentinel_ids(tokenizer) is not None
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    assert words_of(tokenizer, tokenizer(" | <suffix> V1", add_special_tokens=False)["input_ids"]) == \
        ["\u2581|", "<suffix>", "\u2581V1"]
    plain = tmp_path / "plain"
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(plain), max_steps=2, eval_every=0)
    assert run_script("train.py", "--config", config).returncode == 0
    _, tokenizer, card = model_folder.load(plain)
    assert card.infill_share == 0 and infilling.sentinel_ids(tokenizer) is None


def test_fine_tuning_to_infill_adds_the_sentinels_to_a_bpe_tokenizer(tmp_path, tiny_dataset):
    pretrained = tmp_path / "pretrained"
    local_pretrained_model(pretrained)
    out = tmp_path / "tuned"
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(out), from_scratch=False,
                          model_name=str(pretrained), max_steps=2, eval_every=0, infill_share=0.5)
    result = run_script("train.py", "--config", config)
    assert result.returncode == 0, result.stderr
    model, tokenizer, card = model_folder.load(out)
    sentinels = infilling.sentinel_ids(tokenizer)
    assert max(sentinels.suffix, sentinels.middle, *sentinels.lengths) < model.get_input_embeddings().weight.shape[0]
    assert card.infill_share == 0.5


@pytest.mark.parametrize("changes, message", [
    ({"infill_share": 1.5}, "infill_share must be in [0, 1]"),
    ({"infill_share": -0.1}, "infill_share must be in [0, 1]"),
    ({"infill_share": 0.5, "unlikelihood_weight": 0.1}, "cannot be used together"),
])
def test_bad_infill_settings_are_one_line_errors(tmp_path, tiny_dataset, changes, message):
    config = write_config(tmp_path, dataset=str(tiny_dataset), output_dir=str(tmp_path / "m"), **changes)
    result = run_script("train.py", "--config", config)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()
    json.loads(config.read_text())  # the config was well-formed: the error is the setting's


def test_a_passage_s_voices_and_the_voices_named():
    """measure_voices: each measure's voices' words by number, chord notes and ties with their
    voice, an absent voice absent; voice_numbers: names in four voices, numbers in any."""
    passage = "| K:1 T:2/4 V1 D5:2~ V2 B4:1 +G4 A4:1 V4 G3:2 | V1 D5:1 C5:1 V2 A4:2 V3 F#4:2 V4 D3:2"
    assert infilling.measure_voices(passage) == [
        {1: ["V1", "D5:2~"], 2: ["V2", "B4:1", "+G4", "A4:1"], 4: ["V4", "G3:2"]},
        {1: ["V1", "D5:1", "C5:1"], 2: ["V2", "A4:2"], 3: ["V3", "F#4:2"], 4: ["V4", "D3:2"]}]
    assert infilling.voice_numbers("tenor, Alto", 4) == (2, 3) and infilling.voice_numbers("3,1,3", 5) == (1, 3)
    for names, voices in (("alto", 3), ("0", 4), ("6", 5)):
        with pytest.raises(ValueError):
            infilling.voice_numbers(names, voices)


def test_kept_voices_follow_the_voice_written_above_them(tokenizer):
    """_with_kept_voices: a kept voice above every written one follows the header, one below a
    written voice follows it; a voice the measure lacks that is not rewritten (a piano score's
    optional voice) is skipped, not taken for a written one, unless it is named to be rewritten."""
    from scorelm.decoding.infill import _with_kept_voices
    from scorelm.decoding.vocabulary import Vocabulary
    vocabulary = Vocabulary.from_tokenizer(tokenizer)
    notes = [word for word in vocabulary.ids_of if word[:1] in "CDEFGAB" and word[-2:] == ":1"]
    soprano, bass = ["V1", notes[0]], ["V4", notes[1]]
    header = [["|"]]
    ids = [vocabulary.ids_of[word] for word in bass]
    # alto rewritten, tenor absent from the measure: the bass follows the alto
    forced, after = _with_kept_voices(header, [{1: soprano, 4: bass}], 0, vocabulary, rewritten=(2,))
    assert forced == [header[0] + soprano] and after == {0: {2: ids}}
    # the tenor named too: the bass follows it
    forced, after = _with_kept_voices(header, [{1: soprano, 4: bass}], 0, vocabulary, rewritten=(2, 3))
    assert forced == [header[0] + soprano] and after == {0: {3: ids}}
    # no voices named: every voice not kept is written (the tenor too)
    assert _with_kept_voices(header, [{1: soprano, 4: bass}], 0, vocabulary)[1] == {0: {3: ids}}
    # the soprano rewritten and the alto absent: the bass still follows the soprano
    forced, after = _with_kept_voices(header, [{4: bass}], 0, vocabulary, rewritten=(1,))
    assert forced == header and after == {0: {1: ids}}


@pytest.fixture(scope="module")
def infill_model(tmp_path_factory, tiny_dataset):
    """A weak model trained to infill (half its pieces rearranged), with room for a chorale and a
    passage in its context."""
    folder = tmp_path_factory.mktemp("infill")
    config = write_config(folder, dataset=str(tiny_dataset), output_dir=str(folder / "model"), max_steps=60,
                          max_length=512, infill_share=0.5)
    result = run_script("train.py", "--config", config)
    assert result.returncode == 0, result.stderr
    return folder / "model"


@pytest.fixture
def chorale_file(tmp_path, tiny_dataset):
    """A training chorale of the tiny dataset (words the model knows) with a pickup, of 8 measures or
    more, short enough for a passage after it in the context."""
    from scorelm import dataset
    from scorelm.language import parse
    for record in dataset.read_records(tiny_dataset / "train.jsonl"):
        piece = parse(record["text"])[0][0]
        if infilling.measure_numbers(piece)[0] == 0 and len(piece.measures) >= 8 and len(record["text"].split()) < 300:
            path = tmp_path / "chorale.txt"
            path.write_text(record["text"] + "\n")
            return path
    raise AssertionError("no chorale of the tiny dataset fits")


def test_infill_rewrites_the_measures_asked_for_and_keeps_every_other_word(infill_model, chorale_file, tmp_path):
    """infer.py --infill chorale --measures 4-5 (the chorale opens with a pickup, measure 0): three
    alternatives, each a valid piece without a repair, with the same number of measures, and
    word for word the score outside measures 4-5, read back from the file written."""
    from scorelm.language import parse
    original = chorale_file.read_text().strip()
    piece = parse(original)[0][0]
    numbers = infilling.measure_numbers(piece)
    assert numbers[0] == 0  # a pickup
    start, end = numbers.index(4), numbers.index(5) + 1
    before, passage, after = infilling.split_at_measures(original, start, end)
    assert passage.startswith("|") and " ".join([before, passage, after]) == original
    out = tmp_path / "rewritten.txt"
    result = run_script("infer.py", "--infill", chorale_file, "--measures", "4-5", "--model", infill_model,
                        "--num-samples", 3, "--seed", 2, "-o", out)
    assert result.returncode == 0, result.stderr
    texts = out.read_text().splitlines()
    assert len(texts) == 3
    for text in texts:
        pieces, report = parse(text)
        assert report.total == 0 and len(pieces) == 1 and len(pieces[0].measures) == len(piece.measures)
        assert text.startswith(before + " |") and text.endswith(" " + after)
        written = text[len(before) + 1:len(text) - len(after) - 1]
        assert written.split().count("|") == 2
    again = run_script("infer.py", "--infill", chorale_file, "--measures", "4-5", "--model", infill_model,
                       "--num-samples", 3, "--seed", 2)
    assert again.stdout.splitlines() == texts  # the seed decides


def test_infill_of_the_opening_and_of_the_close(infill_model, chorale_file):
    """The span may open the piece (the model writes its header too) or close it (the score's
    own close, ||, stays)."""
    from scorelm.language import parse
    original = chorale_file.read_text().strip()
    piece = parse(original)[0][0]
    numbers = infilling.measure_numbers(piece)
    for first, last in ((numbers[0], numbers[1]), (numbers[-1], numbers[-1])):
        result = run_script("infer.py", "--infill", chorale_file, "--measures", f"{first}-{last}", "--model",
                            infill_model, "--seed", 5)
        assert result.returncode == 0, result.stderr
        text = result.stdout.strip()
        pieces, report = parse(text)
        assert report.total == 0 and len(pieces[0].measures) == len(piece.measures)
        before, _, after = infilling.split_at_measures(original, numbers.index(first), numbers.index(last) + 1)
        assert text.startswith(before) and text.endswith(after) and text.endswith("||")
        assert (before == "") == (first == numbers[0]) and (after == "||") == (last == numbers[-1])


@pytest.mark.parametrize("measures, message", [
    ("40-41", "not within the piece's measures"),
    ("5-3", "ends before it begins"),
    ("x", "must be a number of measures or A-B"),
    ("0-8", "at most 8 can be rewritten at once"),
])
def test_bad_spans_are_one_line_errors(infill_model, chorale_file, tmp_path, measures, message):
    out = tmp_path / "x.txt"
    result = run_script("infer.py", "--infill", chorale_file, "--measures", measures, "--model", infill_model, "-o", out)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_infill_needs_a_span_and_a_model_trained_to_infill(infill_model, tiny_model, chorale_file, tmp_path):
    out = tmp_path / "x.txt"
    result = run_script("infer.py", "--infill", chorale_file, "--model", infill_model, "-o", out)
    assert result.returncode == 2 and "--infill needs --measures" in result.stderr
    result = run_script("infer.py", "--infill", chorale_file, "--measures", "2-3", "--model", tiny_model, "-o", out)
    assert result.returncode == 2 and "was not trained to infill" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
    result = run_script("infer.py", "|", "--measures", "2-3", "--model", infill_model)
    assert result.returncode == 2 and "must be a number of measures" in result.stderr


def test_infill_with_particles_keeps_the_music_around_the_span(infill_model, chorale_file):
    """With rules and particles (sequences resampled by what the rules leave them) the span is
    written as well: valid, the music around it the score's own."""
    from scorelm.language import parse
    original = chorale_file.read_text().strip()
    numbers = infilling.measure_numbers(parse(original)[0][0])
    result = run_script("infer.py", "--infill", chorale_file, "--measures", f"{numbers[2]}-{numbers[3]}", "--model",
                        infill_model, "--particles", 2, "--rules", "hard", "--seed", 1)
    assert result.returncode == 0, result.stderr
    before, _, after = infilling.split_at_measures(original, 2, 4)
    text = result.stdout.strip()
    assert parse(text)[1].total == 0 and text.startswith(before + " |") and text.endswith(" " + after)


@pytest.mark.parametrize("voices, rewritten", [("alto,tenor", {2, 3}), ("bass", {4}), ("1", {1}), ("soprano,bass", {1, 4})])
def test_infill_some_voices_keeps_the_others_inside_the_span(infill_model, chorale_file, tmp_path, voices, rewritten):
    """--voices: inside the span only those voices are written again, every other voice's words
    the score's own, measure by measure (the kept voices above, between and below the written
    ones), and the piece valid; read back from the file written."""
    from scorelm.language import parse
    original = chorale_file.read_text().strip()
    piece = parse(original)[0][0]
    numbers = infilling.measure_numbers(piece)
    start, end = numbers.index(3), numbers.index(5) + 1
    before, passage, after = infilling.split_at_measures(original, start, end)
    out = tmp_path / "voices.txt"
    result = run_script("infer.py", "--infill", chorale_file, "--measures", "3-5", "--voices", voices, "--model",
                        infill_model, "--num-samples", 3, "--seed", 4, "-o", out)
    assert result.returncode == 0, result.stderr
    texts = out.read_text().splitlines()
    assert len(texts) == 3
    given = infilling.measure_voices(passage)
    changed = set()
    for text in texts:
        pieces, report = parse(text)
        assert report.total == 0 and len(pieces[0].measures) == len(piece.measures)
        assert text.startswith(before + " |") and text.endswith(" " + after)
        written = infilling.measure_voices(text[len(before) + 1:len(text) - len(after) - 1])
        assert len(written) == len(given)
        for ours, score in zip(written, given):
            assert set(ours) == set(score)
            for number in score:
                if number not in rewritten:
                    assert ours[number] == score[number]
                elif ours[number] != score[number]:
                    changed.add(number)
    assert changed  # the voices asked for were written again (not copied)


def test_infill_voices_bad_input_is_one_line(infill_model, chorale_file, tmp_path):
    out = tmp_path / "x.txt"
    for voices, message in (("quintus", "the score has no voice 'quintus'"), ("5", "the score has no voice '5'"),
                            ("alto,", "the score has no voice ''")):
        result = run_script("infer.py", "--infill", chorale_file, "--measures", "2-3", "--voices", voices,
                            "--model", infill_model, "-o", out)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
    result = run_script("infer.py", "|", "--voices", "alto", "--model", infill_model, "-o", out)
    assert result.returncode == 2 and "use it with --infill" in result.stderr and not out.exists()


def test_hard_rules_hold_into_the_music_after_the_span(infill_model, chorale_file):
    """With hard rules, no consecutive fifths or octaves (counted by music21, as the scorecard
    counts) between the span's last chord and the first chord after it, unless the rules' report
    says a rule had to be given up."""
    from scorelm import evaluation
    from scorelm.language import parse
    original = chorale_file.read_text().strip()
    piece = parse(original)[0][0]
    numbers = infilling.measure_numbers(piece)
    last = numbers.index(4)
    bach = evaluation.piece_statistics(piece.excerpt(last + 1, last + 2))["counts"]  # the measure after, alone
    result = run_script("infer.py", "--infill", chorale_file, "--measures", "3-4", "--model", infill_model,
                        "--rules", "hard", "--num-samples", 6, "--seed", 3)
    assert result.returncode == 0, result.stderr
    given_up = "parallel" in result.stderr
    for text in result.stdout.splitlines():
        ours = parse(text)[0][0]
        across = evaluation.piece_statistics(ours.excerpt(last, last + 2))["counts"]
        inside = evaluation.piece_statistics(ours.excerpt(last, last + 1))["counts"]
        for name in ("parallel_fifths", "parallel_octaves"):
            edge = across[name] - inside[name] - bach[name]
            assert edge == 0 or given_up, (name, text)


def test_the_scorecard_of_a_model_trained_to_infill_has_infilling_columns(infill_model, tiny_dataset, tmp_path):
    """--evaluate with a model trained to infill: a passage in the middle of each test chorale
    written again, all voices and the inner voices alone, beside Bach's same passages: every
    piece valid and every word outside its span kept, the span's bits both ways, each rewritten
    voice's agreement with Bach (and none for a voice kept), read back from the JSON written."""
    import shutil
    folder = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, folder)
    train = (folder / "train.jsonl").read_text().splitlines()
    (folder / "test.jsonl").write_text("\n".join(train[:3]) + "\n")  # melodies of words the model knows
    result = run_script("infer.py", "--evaluate", "--model", infill_model, "--dataset", folder, "--num-samples", 2,
                        "--max-new-tokens", 100, "--harmonizations", 1, "-o", tmp_path / "card")
    assert result.returncode == 0, result.stderr
    columns = json.loads((tmp_path / "card.json").read_text())["columns"]
    assert {"infilled", "infilled inner", "Bach spans"} <= set(columns)
    every, inner, bach = columns["infilled"], columns["infilled inner"], columns["Bach spans"]
    assert every["pieces"] == inner["pieces"] == bach["pieces"] == 3
    for column in (every, inner):
        assert column["valid_pieces_percent"] == 100 and column["kept_outside_percent"] == 100
    assert every["span_bits_both_sides"] > 0 and every["span_bits_before_alone"] > 0
    assert "span_bits_both_sides" not in inner
    assert all(0 <= every[f"matches_bach_{role}_percent"] <= 100 for role in ("soprano", "alto", "tenor", "bass"))
    assert "matches_bach_soprano_percent" not in inner and "matches_bach_bass_percent" not in inner
    assert bach["interval_distance"] == 0 and 0 <= every["interval_distance"] <= 1
    assert "span bits per note, both sides" in result.stdout and "infilled inner" in result.stdout


def test_the_rewritten_passage_is_marked_in_the_rendered_score(infill_model, chorale_file, tmp_path):
    """--infill --render --voices alto,tenor: in the MusicXML written (read back with music21)
    the alto's and tenor's notes of the span are coloured and no other note is; the page's
    engraving shows the colour."""

    from scorelm import notation
    from scorelm.language import parse
    numbers = infilling.measure_numbers(parse(chorale_file.read_text())[0][0])
    first, end = numbers.index(3), numbers.index(4) + 1
    out = tmp_path / "marked.txt"
    result = run_script("infer.py", "--infill", chorale_file, "--measures", "3-4", "--voices", "alto,tenor",
                        "--model", infill_model, "--seed", 1, "-o", out, "--render")
    assert result.returncode == 0, result.stderr
    score = language.read_score(tmp_path / "marked.musicxml")
    for part_index, part in enumerate(score.parts):
        for index, measure in enumerate(part.getElementsByClass("Measure")):
            colours = {note.style.color for note in measure.recurse().notes}
            if part_index in (1, 2) and first <= index < end:
                assert colours == {notation.MARK_COLOUR}, (part_index, index)
            else:
                assert notation.MARK_COLOUR not in colours, (part_index, index)
    page = (tmp_path / "marked.html").read_text()
    assert notation.MARK_COLOUR in page and "written again, in red" in page
