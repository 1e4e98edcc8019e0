"""Sound: a piece performed (a tempo, fermatas held as a choir holds them), written as MIDI by
music21 with each voice on its own channel and instrument, and rendered to audio by FluidSynth
with a General MIDI soundfont where one is installed, else by a small organ written here.

Install the synthesiser: Debian/Ubuntu `sudo apt-get install fluidsynth fluid-soundfont-gm`;
macOS `brew install fluid-synth` and a General MIDI soundfont (e.g. FluidR3_GM.sf2) named by
$SCORELM_SOUNDFONT. Audio files: MP3 (every browser plays it), WAV on request.

Why a hand-written fallback organ: without a soundfont there is no General MIDI synthesiser to
call, and sine beeps do not let anyone judge four-part writing. A pipe organ's principal stop is
little more than a few harmonics with a soft attack, so `organ_render` adds those per note with
numpy; it plays the same performance (same events, same seconds) as the MIDI file.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from scorelm import files, language

DEFAULT_TEMPO = 72  # quarter notes a minute: a chorale sung in church, unhurried
FERMATA_HOLD = 1.5  # a note under the top voice's fermata lasts this many times its written length
# Mono at 22.05 kHz: a choir's fundamentals and the harmonics that colour them lie far below
# 11 kHz, and it makes MP3s a quarter of the size and four times as quick to write
SAMPLE_RATE = 22050
RELEASE_SECONDS = 0.6  # the sound after the last note ends (reverb, release), then cut
# General MIDI programs (0-based) a voice may be played on
INSTRUMENTS = {"choir": 52, "voices": 53, "organ": 19, "strings": 48, "piano": 0, "recorder": 74}
DEFAULT_INSTRUMENT = "choir"
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
              "/usr/share/soundfonts/default.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2",
              "/opt/homebrew/share/soundfonts/default.sf2", "/usr/local/share/soundfonts/default.sf2")


@dataclass(frozen=True)
class Sounding:
    """One note as played: start and end in seconds, MIDI pitch, voice (0 = top)."""
    start: float
    end: float
    midi: int
    voice: int


class TimeMap:
    """Score time (quarters from the piece's start) to seconds: the tempo throughout, slower by
    FERMATA_HOLD while a fermata note of the top voice sounds."""

    def __init__(self, piece: language.Piece, tempo: float = DEFAULT_TEMPO, fermata_hold: float = FERMATA_HOLD):
        self.tempo = tempo
        spans = [(onset, onset + event.duration) for onset, event in piece.voice_events(0) if event.fermata]
        # breakpoints: (quarter, seconds per quarter from there on)
        self.changes = [(Fraction(0), 60.0 / tempo)]
        for start, end in spans:
            self.changes += [(start, 60.0 * fermata_hold / tempo), (end, 60.0 / tempo)]

    def tempo_marks(self) -> list[tuple[Fraction, float]]:
        """(quarter, quarter notes a minute) at each change."""
        return [(at, 60.0 / per) for at, per in self.changes]

    def seconds(self, quarters) -> float:
        total, previous_at, previous_per = 0.0, Fraction(0), self.changes[0][1]
        for at, per in self.changes[1:]:
            if at >= quarters:
                break
            total += float(at - previous_at) * previous_per
            previous_at, previous_per = at, per
        return total + float(Fraction(quarters) - previous_at) * previous_per


def piece_quarters(piece: language.Piece) -> Fraction:
    return sum((measure.length for measure in piece.measures), Fraction(0))


def performance(piece: language.Piece, tempo: float = DEFAULT_TEMPO,
                fermata_hold: float = FERMATA_HOLD) -> tuple[list[Sounding], float]:
    """Every note as played (tied notes joined into one) and the piece's length in seconds."""
    timing = TimeMap(piece, tempo, fermata_hold)
    notes = []
    for voice in range(piece.num_voices):
        held: dict[int, Fraction] = {}  # MIDI -> start (quarters) of a note tied onward
        for onset, event in piece.voice_events(voice):
            if event.grace:
                continue  # no duration of its own: not played
            tied = {language.midi_number(p) for p in event.tied_pitches}
            starts = {}
            for pitch in event.pitches:  # every note of a chord
                midi = language.midi_number(pitch)
                starts[midi] = held.get(midi, onset)
            held = {}
            for midi, start in starts.items():
                if midi in tied:
                    held[midi] = start
                else:
                    notes.append(Sounding(timing.seconds(start), timing.seconds(onset + event.duration), midi, voice))
    return notes, timing.seconds(piece_quarters(piece))


def voices_apart(piece: language.Piece) -> language.Piece:
    """The piece as a performance sees it: every voice a part of its own (two voices of a piano
    staff that strike one pitch together are two notes, not one cut short on a shared channel),
    a voice's absent measures as rests, no grace notes (no duration of their own)."""
    measures = []
    for measure in piece.measures:
        voices = []
        for events in measure.voices:
            kept = [e for e in events if not e.grace]
            voices.append(kept or [language.Event(None, measure.length)])
        measures.append(language.Measure(measure.length, voices, measure.key, measure.time))
    return language.Piece(measures)


def midi_score(piece: language.Piece, instrument: str = DEFAULT_INSTRUMENT, tempo: float = DEFAULT_TEMPO,
               fermata_hold: float = FERMATA_HOLD, title: str | None = None):
    """The music21 Score that MIDI files are written from: one part (and channel) per voice
    (voices_apart), each
    on the instrument's General MIDI program, with tempo marks that hold the fermatas."""
    from music21 import instrument as music21_instrument
    from music21 import stream, tempo as music21_tempo
    measured = language.score_from_piece(voices_apart(piece), title=title)
    # MIDI has no measures: the parts go flat, tied notes joined, so that music21's MIDI writer
    # does not cut a note at its time signature's bar lines (a measure longer than its signature)
    score = stream.Score()
    score.metadata = measured.metadata
    for part in measured.parts:
        flat = part.flatten().stripTies(matchByPitch=True)
        player = music21_instrument.Instrument()
        player.midiProgram = INSTRUMENTS[instrument]
        flat.insert(0, player)
        score.insert(0, flat)
    top = score.parts[0] if score.parts else score.elements[0]
    for at, quarters_per_minute in TimeMap(piece, tempo, fermata_hold).tempo_marks():
        mark = music21_tempo.MetronomeMark(number=round(quarters_per_minute, 3))
        mark.style.hideObjectOnPrint = True
        top.insert(float(at), mark)
    return score


def write_midi(piece: language.Piece, path: Path, **performance_settings) -> Path:
    """A MIDI file with one track and one channel per voice. music21 gives parts that share a
    program one channel; here each voice's track is moved to a channel of its own (never 10,
    General MIDI's drums), so that a player can set each voice's instrument and volume."""
    from music21.midi import translate
    midi_file = translate.streamToMidiFile(midi_score(piece, **performance_settings))
    channels = iter(c for c in range(1, 17) if c != 10)
    for track in midi_file.tracks:
        events = [e for e in track.events if getattr(e, "channel", None) is not None and e.isNoteOn()]
        if not events:
            continue  # the conductor track: tempo and meter only
        channel = next(channels, 1)
        for event in track.events:
            if getattr(event, "channel", None) is not None:
                event.channel = channel
    with files.replacing(path) as temporary:
        midi_file.open(str(temporary), "wb")
        try:
            midi_file.write()
        finally:
            midi_file.close()
    return path


def find_soundfont() -> Path | None:
    """$SCORELM_SOUNDFONT, else the first General MIDI soundfont in the usual places."""
    named = os.environ.get("SCORELM_SOUNDFONT")
    if named:
        return Path(named) if Path(named).is_file() else None
    return next((Path(p) for p in SOUNDFONTS if Path(p).is_file()), None)


def synthesiser() -> str:
    """What renders audio on this machine: 'fluidsynth' (with a soundfont) or 'organ' (the fallback)."""
    return "fluidsynth" if shutil.which("fluidsynth") and find_soundfont() else "organ"


def fluidsynth_render(midi_path: Path, soundfont: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The MIDI file played by FluidSynth (its command line: fast, and no Python binding to
    build), as float32 mono samples (frames x 1)."""
    import soundfile
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "fluidsynth.wav"
        result = subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(sample_rate), "-F", str(wav),
                                 str(soundfont), str(midi_path)], capture_output=True, text=True)
        if result.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
            from scorelm.cli import UserError
            said = " ".join(result.stderr.split())[-200:] or "no sound written"
            raise UserError(f"fluidsynth could not play {midi_path.name} with {soundfont} ({said}); "
                            "check the soundfont ($SCORELM_SOUNDFONT) or uninstall fluidsynth to use the built-in organ")
        samples, _ = soundfile.read(str(wav), dtype="float32", always_2d=True)
    if not np.abs(samples).max(initial=0.0) > 0:  # it plays silence where it cannot load the soundfont
        from scorelm.cli import UserError
        said = " ".join(result.stderr.split())[-200:]
        raise UserError(f"fluidsynth played nothing with {soundfont}{f' ({said})' if said else ''}; check the "
                        "soundfont ($SCORELM_SOUNDFONT) or uninstall fluidsynth to use the built-in organ")
    return samples.mean(axis=1, keepdims=True)


ORGAN_HARMONICS = (1.0, 0.45, 0.22, 0.12, 0.06)  # a principal stop: the octave and fifth above ring softly


def organ_render(notes: list[Sounding], seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The fallback: each note a few harmonics with a soft attack and release, as float32 mono
    samples (frames x 1). See the module docstring for why."""
    frames = int((seconds + RELEASE_SECONDS) * sample_rate) + 1
    out = np.zeros((frames, 1), dtype=np.float32)
    attack, release = int(0.03 * sample_rate), int(0.08 * sample_rate)
    for note in notes:
        first = int(note.start * sample_rate)
        length = max(int((note.end - note.start) * sample_rate), 1) + release
        length = min(length, frames - first)
        if length <= 0:
            continue
        t = np.arange(length, dtype=np.float32) / sample_rate
        frequency = 440.0 * 2 ** ((note.midi - 69) / 12)
        wave = np.zeros(length, dtype=np.float32)
        for harmonic, amplitude in enumerate(ORGAN_HARMONICS, 1):
            if frequency * harmonic < sample_rate / 2:
                wave += amplitude * np.sin(2 * np.pi * frequency * harmonic * t)
        envelope = np.ones(length, dtype=np.float32)
        envelope[:min(attack, length)] = np.linspace(0, 1, min(attack, length))
        envelope[-min(release, length):] *= np.linspace(1, 0, min(release, length))
        out[first:first + length, 0] += wave * envelope
    return out


def render(piece: language.Piece, *, instrument: str = DEFAULT_INSTRUMENT, tempo: float = DEFAULT_TEMPO,
           fermata_hold: float = FERMATA_HOLD, synth: str | None = None) -> tuple[np.ndarray, str]:
    """The piece as audio (float32 mono, frames x 1, SAMPLE_RATE), cut RELEASE_SECONDS after its last
    note, peak-normalised; and which synthesiser played it."""
    synth = synth or synthesiser()
    notes, seconds = performance(piece, tempo, fermata_hold)
    if synth == "fluidsynth":
        soundfont = find_soundfont()
        if soundfont is None or not shutil.which("fluidsynth"):
            raise RuntimeError("fluidsynth or a General MIDI soundfont is missing")
        with tempfile.TemporaryDirectory() as folder:
            midi_path = write_midi(piece, Path(folder) / "piece.mid", instrument=instrument, tempo=tempo,
                                   fermata_hold=fermata_hold)
            samples = fluidsynth_render(midi_path, soundfont)
    else:
        samples = organ_render(notes, seconds)
    frames = int((seconds + RELEASE_SECONDS) * SAMPLE_RATE)
    samples = samples[:frames]
    if len(samples) < frames:
        samples = np.pad(samples, ((0, frames - len(samples)), (0, 0)))
    fade = min(int(0.3 * SAMPLE_RATE), frames)
    samples[frames - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)[:, None]
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak > 0:
        samples = samples * (0.89 / peak)  # -1 dBFS
    return samples.astype(np.float32), synth


def mp3_bytes(samples: np.ndarray) -> bytes:
    """MP3 of the samples, in memory: for .mp3 files and for pages alike (libsndfile through
    soundfile: no encoder to install)."""
    import io

    import soundfile
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, SAMPLE_RATE, format="MP3")
    return buffer.getvalue()


def write_wav(samples: np.ndarray, path: Path) -> Path:
    import soundfile
    with files.replacing(path) as temporary:
        soundfile.write(str(temporary), samples, SAMPLE_RATE, subtype="PCM_16")
    return path
