"""The evaluation: a Kneser-Ney baseline that is a real distribution, music statistics that count
what they claim on small hand-made pieces, and infer.py --evaluate end to end."""
from __future__ import annotations

import json
import re

import pytest
from conftest import run_script

from scorelm import decoding, evaluation, language


def test_kneser_ney_is_a_distribution():
    stream = [0, 1, 2, 3, 1, 2, 4, 1, 2, 3, 0, 1, 3]
    for order in (1, 2, 3):
        model = evaluation.KneserNey(order, vocabulary_size=6).fit(stream)
        for context in [(), (1,), (1, 2), (5, 5), (2, 4)]:
            total = sum(model.probability(context, word) for word in range(6))
            assert total == pytest.approx(1.0)
    bigram = evaluation.KneserNey(2, 6).fit(stream)
    assert bigram.probability((1,), 2) > bigram.probability((1,), 4) > 0  # seen beats unseen, unseen not zero
    assert 0 < bigram.nll_bits([1, 2, 3]) < evaluation.KneserNey(1, 6).fit(stream).nll_bits([1, 2, 3])


def piece(text: str) -> language.Piece:
    pieces, report = language.parse(text)
    assert report.total == 0
    return pieces[0]


def test_parallels_crossings_and_spacing_are_counted():
    # soprano and bass move C-D over C-D: parallel octaves; alto G-A over C: parallel fifths with
    # the bass; tenor above alto in the second half: two crossing slices
    text = ("| K:0 T:4/4 V1 C5:2 D5:2 V2 G4:2 A4:2 V3 E4:2 B4:2 V4 C3:2 D3:2 ||")
    counts = evaluation.piece_statistics(piece(text))["counts"]
    assert counts["parallel_octaves"] == 1  # soprano-bass (C5/C3 -> D5/D3)
    assert counts["parallel_fifths"] == 1  # alto-bass (G4/C3 -> A4/D3)
    assert counts["voice_crossings"] == 1  # tenor B4 above alto A4
    assert counts["spacing_errors"] == 0
    assert counts["beats"] == 4 and counts["notes"] == 8
    assert counts["ends_on_tonic_with_fermata"] == 0  # ends on D without a fermata
    wide = piece("| K:0 T:4/4 V1 C6:4^ V2 G4:4 V3 C4:4 V4 C3:4^ ||")  # C6-G4: more than an octave
    wide_counts = evaluation.piece_statistics(wide)["counts"]
    assert wide_counts["spacing_errors"] == 1 and wide_counts["out_of_range"] == 1  # soprano C6
    assert wide_counts["ends_on_tonic"] == 1 and wide_counts["ends_on_tonic_with_fermata"] == 0  # alto, tenor: none
    assert counts["chromatic_clashes"] == 0 and wide_counts["chromatic_clashes"] == 0
    # the tenor's F4 against the soprano's F#5 (octaves apart) at the first onset, and still at the
    # alto's second; then F# in both: clashes at two of the three onsets
    clash = piece("| K:0 T:4/4 V1 F#5:4 V2 A4:2 B4:2 V3 F4:3 F#4:1 V4 D3:4 ||")
    assert evaluation.piece_statistics(clash)["counts"]["chromatic_clashes"] == 2


def test_chord_qualities_count_the_notes_of_chords_and_skip_grace_notes():
    """A piano's chords are sonorities too: a right hand's C-E chord over a bass G is a major
    triad; a grace note is no note value of the rhythm."""
    stats = evaluation.piece_statistics(piece("| K:0 T:2/4 P:1/1 V1 E5:0 E4:2 +C4 V2 G3:1 G2:1 ||"))
    assert stats["chords"] == {"major": 2}
    assert stats["rhythm"] == {"2": 1, "1": 2}


@pytest.mark.parametrize("text, on_tonic", [
    ("| K:0 T:4/4 V1 E5:4^ V2 G4:4^ V3 C4:4^ V4 C3:4^ ||", True),  # C major
    ("| K:0 T:4/4 V1 E5:4^ V2 A4:4^ V3 C#4:4^ V4 A2:4^ ||", True),  # the relative minor, Picardy third
    ("| K:0 T:4/4 V1 E5:4^ V2 G#4:4^ V3 B3:4^ V4 E3:4^ ||", True),  # Phrygian: the melody's final E
    ("| K:0 T:4/4 V1 E5:2 F5:2 V2 C5:2 C5:2 V3 G4:2 A4:2 V4 C3:2 F3:2 | V1 E5:4 V2 C5:4 V3 G4:4 V4 C3:4 "
     "| V1 D5:4^ V2 G4:4^ V3 B3:4^ V4 G2:4^ ||", False),  # a half cadence on G in C major
    ("| K:0 T:4/4 V1 C5:4^ V2 G4:4^ V3 E4:4^ V4 G2:4^ ||", False),  # a six-four chord
    ("| K:0 T:4/4 V1 C5:4^ V2 F4:4^ V3 D4:4^ V4 C3:4^ ||", False),  # not a triad
])
def test_the_tonic_test_knows_modes_and_inversions(text, on_tonic):
    counts = evaluation.piece_statistics(piece(text))["counts"]
    assert counts["ends_on_tonic"] == on_tonic == counts["ends_on_tonic_with_fermata"]


def test_closes_on_a_church_mode_final_are_counted_apart():
    """A Phrygian close on E or a Mixolydian one on G under no signature ends on the tonic (as
    Bach's modal melodies do) but not on the signature's own tonic, C or A."""
    closes = ["| K:0 T:4/4 V1 E5:4^ V2 G4:4^ V3 C4:4^ V4 C3:4^ ||",  # C major
              "| K:0 T:4/4 V1 C5:4^ V2 E4:4^ V3 A3:4^ V4 A2:4^ ||",  # A minor
              "| K:0 T:4/4 V1 E5:4^ V2 G#4:4^ V3 B3:4^ V4 E3:4^ ||",  # E Phrygian
              "| K:0 T:4/4 V1 G5:4^ V2 D5:4^ V3 B3:4^ V4 G2:4^ ||"]  # G Mixolydian
    statistics = evaluation.music_statistics(closes)
    assert statistics["ending_on_tonic_percent"] == 100
    assert statistics["ending_on_signature_tonic_percent"] == 50
    half_cadence = "| K:0 T:4/4 V1 D5:4^ V2 G4:4^ V3 B3:4^ V4 G2:4^ ||"  # a D over G: no modal final, no tonic
    assert evaluation.music_statistics([half_cadence])["ending_on_signature_tonic_percent"] == 0


def test_a_close_followed_by_rests_is_judged_by_its_last_chord():
    # bwv261 ends B4:2^ R:1 in every voice: the fermatas are where the soprano's last note begins
    closed = piece("| K:0 T:4/4 V1 C5:2^ R:2 V2 E4:2^ R:2 V3 G3:2^ R:2 V4 C3:2^ R:2 ||")
    assert evaluation.ending(closed) == (True, True)
    unmarked = piece("| K:0 T:4/4 V1 C5:2^ R:2 V2 E4:2 R:2 V3 G3:2^ R:2 V4 C3:2^ R:2 ||")
    assert evaluation.ending(unmarked) == (True, False)


def test_the_last_chord_sounds_its_third_or_is_an_open_fifth():
    full = evaluation.music_statistics(["| K:0 T:4/4 V1 E5:4^ V2 G4:4^ V3 C4:4^ V4 C3:4^ ||",
                                        "| K:0 T:4/4 V1 C5:4^ V2 G4:4^ V3 C4:4^ V4 C3:4^ ||",
                                        "| K:0 T:4/4 V1 C5:4^ V2 A4:4^ V3 E4:4^ V4 A2:4^ ||",
                                        "| K:0 T:4/4 V1 C5:4^ V2 G4:4^ V3 C4:4^ V4 G2:4^ ||"])
    # C-E-G-C and A-C-E-A sound a third above the bass; C-G-C-C and C-G-C over G (a fourth) do not
    assert full["final_chord_third_percent"] == 50
    assert evaluation.piece_statistics(piece("| K:0 T:4/4 V1 C5:4^ V2 G4:4^ V3 C4:4^ V4 C3:4^ ||"))[
        "counts"]["ends_on_tonic"] == 1  # an open fifth still closes on the tonic


def test_distances_and_agreement():
    bach = "| K:0 T:4/4 V1 E5:2 D5:2 V2 G4:2 G4:2 V3 C4:2 B3:2 V4 C3:2 G2:2 | V1 C5:4^ V2 G4:4^ V3 E4:4^ V4 C3:4^ ||"
    ours = "| K:0 T:4/4 V1 E5:2 D5:2 V2 C5:2 B4:2 V3 C4:2 G3:2 V4 C3:2 G2:2 | V1 C5:4^ V2 G4:4^ V3 E4:4^ V4 C3:4^ ||"
    reference = evaluation.music_statistics([bach])
    same = evaluation.music_statistics([bach], reference=reference)
    assert same["interval_distance"] == same["chord_quality_distance"] == same["rhythm_distance"] == 0
    other = evaluation.music_statistics([ours], reference=reference)
    assert other["rhythm_distance"] == 0 and 0 < other["interval_distance"] < 1
    shares = evaluation.agreement([ours], [bach])
    # alto: half of the time (the second measure); tenor: 3 of 8 beats differ; bass: all
    assert shares == {"matches_bach_alto_percent": 50.0, "matches_bach_tenor_percent": 75.0,
                      "matches_bach_bass_percent": 100.0}


def test_voices_are_compared_by_what_they_are_when_bach_wrote_five():
    """Two of the validation chorales have five voices and a harmonization writes four: the
    soprano, alto, tenor and bass are compared with Bach's soprano, first two inner voices and
    lowest voice, and his extra inner voice is left out instead of counting as wholly unlike."""
    four = "| K:0 T:4/4 V1 E5:2 D5:2 V2 G4:2 G4:2 V3 C4:2 B3:2 V4 C3:2 G2:2 | V1 C5:4^ V2 G4:4^ V3 E4:4^ V4 C3:4^ ||"
    five = ("| K:0 T:4/4 V1 E5:2 D5:2 V2 G4:2 G4:2 V3 C4:2 B3:2 V4 G3:1 A3:1 B3:2 V5 C3:2 G2:2 "
            "| V1 C5:4^ V2 G4:4^ V3 E4:4^ V4 C4:4^ V5 C3:4^ ||")
    reference = evaluation.music_statistics([five])
    assert {role for role, _ in reference["_histograms"]["intervals"]} == {"soprano", "inner 1", "inner 2",
                                                                            "inner 3", "bass"}
    assert evaluation.music_statistics([four], reference=reference)["interval_distance"] == 0
    # what differs is still seen: a bass that leaps by octaves where Bach's moved by fourths and fifths
    leaping = four.replace("V4 C3:2 G2:2", "V4 C3:2 C2:2")
    assert evaluation.music_statistics([leaping], reference=reference)["interval_distance"] == pytest.approx(1 / 4)
    assert evaluation.agreement([four], [five]) == {"matches_bach_alto_percent": 100.0,
                                                    "matches_bach_tenor_percent": 100.0,
                                                    "matches_bach_bass_percent": 100.0}


def test_music_statistics_of_the_chorales_are_bach_like(chorale_texts):
    texts = list(chorale_texts.values())
    stats = evaluation.music_statistics(texts, evaluation.corpus_pitch_classes(texts))
    assert stats["pieces"] == len(texts) and stats["valid_measures_percent"] == 100
    assert stats["parallel_fifths_per_100_beats"] < 2 and stats["pitch_class_distance"] == 0
    broken = evaluation.music_statistics(["| K:0 T:4/4 V1 C4:1 V2 C4:4 V3 C4:4 V4 C3:4 | V1 C4:4 V2 C4:4 V3 C4:4 V4 C3:4 ||"])
    assert broken["valid_measures_percent"] == 50


def test_evaluate_command(tiny_model, tiny_dataset, tmp_path):
    # a test split whose melodies use only words the tiny model knows (its training pieces)
    import shutil
    folder = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, folder)
    train = (folder / "train.jsonl").read_text().splitlines()
    (folder / "test.jsonl").write_text("\n".join(train[:2]) + "\n")
    result = run_script("infer.py", "--evaluate", "--model", tiny_model, "--dataset", folder, "--num-samples", 4,
                        "--max-new-tokens", 200, "-o", tmp_path / "eval")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    columns = report["columns"]
    assert set(columns) == {"samples", "harmonized", "n-gram", "Bach"}
    assert columns["samples"]["bits_per_note"] > 0 and columns["n-gram"]["bits_per_note"] > 0
    assert columns["samples"]["valid_measures_percent"] == 100 and len(report["samples"]) == 4
    assert len(report["harmonizations"]) == 2 and columns["harmonized"]["valid_measures_percent"] == 100
    # the scorecard's samples are the very pieces infer.py writes with the same seed and settings
    same = run_script("infer.py", "|", "--model", tiny_model, "--num-samples", 4, "--max-new-tokens", 200,
                      "--seed", report["settings"]["seed"])
    assert same.stdout.splitlines() == report["samples"]
    for key in ("interval_distance", "chord_quality_distance", "rhythm_distance"):
        assert 0 <= columns["samples"][key] <= 1 and columns["Bach"][key] == 0
    assert 0 <= columns["harmonized"]["matches_bach_bass_percent"] <= 100
    help_text = run_script("infer.py", "--help").stdout
    default = re.search(r"\(default (\w+)\)", help_text[help_text.index("  --rules {"):]).group(1)
    assert report["settings"]["rules"] == default and default in decoding.MODES
    particles = re.search(r"default (\d+) harmonizing a melody, (\d+) otherwise", " ".join(help_text.split()))
    assert (report["settings"]["harmonization_particles"], report["settings"]["sample_particles"]) == \
        tuple(map(int, particles.groups()))
    again = run_script("infer.py", "--evaluate", "--model", tiny_model, "--dataset", folder, "-o", tmp_path / "eval")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert (tmp_path / "eval.png").read_bytes()[:4] == b"\x89PNG"
    assert "parallel fifths" in result.stdout


def test_evaluate_page_in_chromium(tiny_model, tiny_dataset, tmp_path, browser):
    """The scorecard's page: the table, the plot, and two samples and two harmonizations to hear."""
    import shutil
    from conftest import open_in_browser
    folder = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, folder)
    train = (folder / "train.jsonl").read_text().splitlines()
    (folder / "validation.jsonl").write_text("\n".join(train[2:4]) + "\n")  # melodies the tiny model knows
    result = run_script("infer.py", "--evaluate", "--split", "validation", "--model", tiny_model, "--dataset", folder,
                        "--num-samples", 2, "--max-new-tokens", 200, "-o", tmp_path / "eval")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["split"] == "validation"
    page, errors, requests, durations = open_in_browser(browser, tmp_path / "eval.html")
    assert errors == [] and requests == []
    assert page.locator("table.scorecard tr").count() > 10 and "parallel fifths" in page.inner_text("table.scorecard")
    assert page.evaluate("() => document.querySelector('img').naturalWidth") > 100  # the plot decoded
    titles = page.evaluate("() => [...document.querySelectorAll('section.piece h2')].map(h => h.textContent)")
    assert titles == ["Free sample 1", "Free sample 2", "Harmonization 1", "Harmonization 2"]
    assert len(durations) == 4 and all(d > 0 for d in durations)
    page.close()
