"""Sound and pages: both synthesisers play in tune and in time, the MIDI file gives each voice its
channel, program and the performance's tempo, and the pages infer.py and reconstruct.py write
load in headless Chromium with every score and player, no console error and no request."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import open_in_browser, require_system, run_script

from scorelm import audio, language

SYNTHS = ["fluidsynth", "organ"]


def needs(synth: str) -> None:
    if synth == "fluidsynth":
        require_system("fluidsynth with a General MIDI soundfont", audio.synthesiser() == "fluidsynth")


def fundamental(samples: np.ndarray) -> float:
    """The lowest strong spectral peak of the steady part of a note (Hz)."""
    mono = samples.mean(axis=1)
    steady = mono[int(0.3 * audio.SAMPLE_RATE):-int(1.0 * audio.SAMPLE_RATE)]
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(len(steady)), n=1 << 19))
    frequencies = np.fft.rfftfreq(1 << 19, 1 / audio.SAMPLE_RATE)
    first = int(np.argmax(spectrum > 0.2 * spectrum.max()))
    window = slice(first, first + int(30 / frequencies[1]))  # the peak itself, within 30 Hz
    return float(frequencies[window][np.argmax(spectrum[window])])


def sound_ends(samples: np.ndarray) -> float:
    """When the music stops: the end of the last 50 ms louder than 5% of the loudest."""
    hop = audio.SAMPLE_RATE // 20
    frames = len(samples) // hop
    rms = np.sqrt((samples[:frames * hop].mean(axis=1).reshape(frames, hop) ** 2).mean(axis=1))
    return (np.flatnonzero(rms > 0.05 * rms.max())[-1] + 1) * hop / audio.SAMPLE_RATE


@pytest.fixture(scope="module")
def chorale():
    from music21 import corpus
    return language.piece_from_score(corpus.parse("bach/bwv66.6.mxl"))


@pytest.mark.parametrize("synth", SYNTHS)
def test_a4_sounds_at_440_hz(synth):
    needs(synth)
    piece = language.parse("| K:0 T:4/4 V1 A4:4 ||")[0][0]
    samples, used = audio.render(piece, synth=synth, tempo=60, fermata_hold=1)
    assert used == synth
    assert abs(fundamental(samples) - 440) < 4.4  # within 1%


@pytest.mark.parametrize("synth", SYNTHS)
def test_a_chorale_lasts_as_long_as_its_score(chorale, synth):
    """At 90 quarters a minute, strictly in time and with the fermatas held: the sound stops
    within 5% of when the score says, and the file ends RELEASE_SECONDS later."""
    needs(synth)
    quarters = sum(m.length for m in chorale.measures)
    under_fermatas = sum(e.duration for _, e in chorale.voice_events(0) if e.fermata)
    assert under_fermatas > 0
    for hold in (1.0, audio.FERMATA_HOLD):
        expected = float(quarters + (hold - 1) * under_fermatas) * 60 / 90
        samples, _ = audio.render(chorale, synth=synth, tempo=90, fermata_hold=hold)
        assert abs(sound_ends(samples) - expected) <= 0.05 * expected, (hold, sound_ends(samples), expected)
        assert abs(len(samples) / audio.SAMPLE_RATE - expected - audio.RELEASE_SECONDS) < 0.01


def test_midi_gives_each_voice_a_channel_program_and_the_tempo(chorale, tmp_path):
    from music21 import midi
    path = audio.write_midi(chorale, tmp_path / "c.mid", instrument="organ", tempo=80)
    midi_file = midi.MidiFile()
    midi_file.open(str(path))
    midi_file.read()
    midi_file.close()
    programs, tempos = {}, []
    for track in midi_file.tracks:
        for event in track.events:
            if event.type == midi.ChannelVoiceMessages.PROGRAM_CHANGE:
                programs[event.channel] = event.data
            if event.type == midi.MetaEvents.SET_TEMPO:
                tempos.append(round(60_000_000 / int.from_bytes(event.data, "big"), 1))
    assert len(programs) == 4 and set(programs.values()) == {audio.INSTRUMENTS["organ"]}
    fermatas = sum(1 for _, e in chorale.voice_events(0) if e.fermata)
    assert tempos[0] == 80 and tempos.count(round(80 / audio.FERMATA_HOLD, 1)) == fermatas
    # the notes are the score's, in quarters whatever the tempo (a held pitch compared as one
    # sound: ties and music21's reading may cut it differently)
    back = language.read_score(str(path))
    for voice, part in enumerate(back.parts):
        written = [(o, o + e.duration, language.midi_number(e.pitch)) for o, e in chorale.voice_events(voice) if e.pitch]
        heard = [(n.getOffsetInHierarchy(back), n.getOffsetInHierarchy(back) + n.quarterLength, n.pitch.midi)
                 for n in part.flatten().notes]
        assert held_sounds(heard) == held_sounds(written)


def held_sounds(notes) -> list[tuple[float, float, int]]:
    """(start, end, MIDI) with notes of one pitch that follow without a gap joined."""
    joined = []
    for start, end, midi in sorted((float(a), float(b), m) for a, b, m in notes):
        if joined and joined[-1][2] == midi and abs(joined[-1][1] - start) < 1e-6:
            joined[-1] = (joined[-1][0], end, midi)
        else:
            joined.append((start, end, midi))
    return joined


def page_facts(page) -> dict:
    return page.evaluate("""() => ({
        pieces: document.querySelectorAll('section.piece').length,
        scores: [...document.querySelectorAll('section.piece')].map(s => s.querySelectorAll('.score > svg').length),
        players: [...document.querySelectorAll('section.piece')].map(s => s.querySelectorAll('audio').length),
        seconds: [...document.querySelectorAll('audio')].map(a => parseFloat(a.dataset.seconds)),
        background: getComputedStyle(document.body).backgroundColor,
        overflow: document.documentElement.scrollWidth - window.innerWidth })""")


def test_render_page_in_chromium(tiny_model, tmp_path, browser):
    result = run_script("infer.py", "|", "--num-samples", 4, "--model", tiny_model, "--seed", 1, "--measures", 3,
                        "-o", tmp_path / "s.txt", "--render")
    assert result.returncode == 0, result.stderr
    for number in range(1, 5):
        for suffix in (".musicxml", ".mid", ".png", ".mp3"):
            assert (tmp_path / f"s-{number}{suffix}").stat().st_size > 0
    page, errors, requests, durations = open_in_browser(browser, tmp_path / "s.html")
    facts = page_facts(page)
    assert errors == [] and requests == []
    assert facts["pieces"] == 4 and all(n >= 1 for n in facts["scores"]) and facts["players"] == [1, 1, 1, 1]
    for decoded, rendered in zip(durations, facts["seconds"]):
        assert abs(decoded - rendered) < 0.05 * rendered  # the browser plays the whole piece
    for number, text in enumerate((tmp_path / "s.txt").read_text().splitlines(), 1):
        piece = language.parse(text)[0][0]
        _, seconds = audio.performance(piece)
        assert abs(facts["seconds"][number - 1] - seconds - audio.RELEASE_SECONDS) < 0.01
    assert "rules" in page.inner_text("header") and "seed" in page.inner_text("header")
    page.close()
    # the reader's dark setting is followed, and a phone needs no sideways scrolling
    dark, *_ = open_in_browser(browser, tmp_path / "s.html", scheme="dark", width=390)
    assert page_facts(dark)["background"] != facts["background"] and page_facts(dark)["overflow"] <= 0
    dark.close()


def test_surprisal_page_in_chromium(tiny_model, tmp_path, browser, chorale):
    from music21 import corpus
    source = tmp_path / "bwv66.6.musicxml"
    corpus.parse("bach/bwv66.6").write("musicxml", fp=str(source))
    result = run_script("infer.py", "--surprisal", source, "--model", tiny_model)
    assert result.returncode == 0, result.stderr
    page, errors, requests, durations = open_in_browser(browser, tmp_path / "bwv66.6.surprisal.html")
    assert errors == [] and requests == [] and len(durations) == 1 and durations[0] > 20
    with open(tmp_path / "bwv66.6.surprisal.csv") as f:
        rows = list(csv.DictReader(f))  # one per note and rest
    labels = page.evaluate("() => [...document.querySelectorAll('g.note > title, g.rest > title')].map(t => t.textContent)")
    assert len(labels) == len(rows) and all(label.endswith(" bits") for label in labels)
    assert sorted(float(label.split("information content ")[-1].split()[0]) for label in labels) == \
        sorted(round(float(row["information.content"]), 2) for row in rows)
    assert labels[0].startswith("Soprano, measure 0, beat 4: C#5")  # the pickup's first note
    colours = page.evaluate("() => new Set([...document.querySelectorAll('g.note')].map(g => g.getAttribute('color'))).size")
    assert colours > 5  # coloured by surprisal, not all one colour
    assert "bits per note" in page.inner_text("main") and "entropy" in page.inner_text("main")
    page.close()
    again = run_script("infer.py", "--surprisal", source, "--model", tiny_model)
    assert again.returncode == 2 and "--overwrite" in again.stderr  # nothing replaced silently


def test_reconstruct_writes_audio_and_a_page(chorale, tmp_path, browser):
    import soundfile
    (tmp_path / "c.txt").write_text(chorale.to_text() + "\n" + chorale.to_text() + "\n")
    result = run_script("reconstruct.py", tmp_path / "c.txt", "--audio", "--wav", "--page", "--tempo", 100)
    assert result.returncode == 0, result.stderr
    _, seconds = audio.performance(chorale, tempo=100)
    for number in (1, 2):
        mp3, wav = soundfile.info(str(tmp_path / f"c-{number}.mp3")), soundfile.info(str(tmp_path / f"c-{number}.wav"))
        assert abs(wav.duration - seconds - audio.RELEASE_SECONDS) < 0.01 and abs(mp3.duration - wav.duration) < 0.1
    page, errors, requests, durations = open_in_browser(browser, tmp_path / "c.html")
    assert errors == [] and requests == [] and len(durations) == 2
    assert page_facts(page)["pieces"] == 2 and "No repairs" in page.inner_text("main")
    page.close()
    again = run_script("reconstruct.py", tmp_path / "c.txt", "--audio", "--page")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    bad = run_script("reconstruct.py", tmp_path / "c.txt", "--audio", "--tempo", 0, "--overwrite")
    assert bad.returncode == 2 and "--tempo" in bad.stderr and "Traceback" not in bad.stderr


def test_harmonization_page_shows_the_melody_and_its_source(tiny_model, tiny_dataset, tmp_path, browser):
    from test_infer import melody_file
    path, melody = melody_file(tiny_dataset, tmp_path)
    result = run_script("infer.py", "--harmonize", path, "--model", tiny_model, "--seed", 5, "-o", tmp_path / "h.txt",
                        "--render")
    assert result.returncode == 0, result.stderr
    page, errors, requests, durations = open_in_browser(browser, tmp_path / "h.html")
    assert errors == [] and requests == [] and len(durations) == 1 and durations[0] > 0
    assert "The melody, from melody.musicxml" in page.inner_text("section.piece")
    assert page.locator(".score.melody svg").count() >= 1 and page_facts(page)["scores"][0] >= 2  # melody + harmonization
    assert str(path) in page.inner_text("header")  # the settings name the melody's file
    page.close()


def test_a_failing_fluidsynth_is_a_one_line_error(tmp_path):
    """FluidSynth installed but failing (a broken build, a soundfont it cannot use): reconstruct.py
    --audio says so in one line and how to go on, for one piece and for several (rendered in
    worker processes), not a traceback."""
    import os
    fake = tmp_path / "bin" / "fluidsynth"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'fluidsynth: error: cannot open audio' >&2\nexit 1\n")
    fake.chmod(0o755)
    soundfont = tmp_path / "any.sf2"
    soundfont.write_bytes(b"RIFF")
    env = {"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "SCORELM_SOUNDFONT": str(soundfont)}
    for count in (1, 2):
        text = "\n".join(["| K:0 T:4/4 V1 C5:4 V2 C4:4 ||"] * count) + "\n"
        (tmp_path / f"p{count}.txt").write_text(text)
        result = run_script("reconstruct.py", tmp_path / f"p{count}.txt", "--audio", env=env)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "fluidsynth could not play" in result.stderr and "cannot open audio" in result.stderr
        assert len(result.stderr.strip().splitlines()[-1]) > 40
