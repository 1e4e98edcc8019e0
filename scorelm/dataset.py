"""Turning score files into dataset records: which files, encoding in worker processes,
splitting by piece, and transposition in the text domain."""
from __future__ import annotations

import hashlib
import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from scorelm import language

SPLITS = ("train", "validation", "test")

# music21's `bach` folder holds the chorales (.mxl, .xml and three Humdrum .krn files), Roman
# numeral analyses of some of them (.rntxt: harmony, not the notes) and one keyboard piece
# (BWV 846, the C major prelude of the Well-Tempered Clavier). The chorales are all the rest.
NOT_CHORALES = {"bwv846"}
SCORE_SUFFIXES = {".mxl", ".xml", ".musicxml", ".krn"}


def bach_chorale_sources() -> list[str]:
    """Corpus paths ("bach/bwv66.6.mxl") of every Bach chorale in music21's corpus."""
    from music21 import corpus
    sources = []
    for path in corpus.getComposer("bach"):
        path = Path(path)
        if path.suffix in SCORE_SUFFIXES and path.stem not in NOT_CHORALES:
            sources.append(f"bach/{path.name}")
    return sorted(sources)


# Roman-numeral analyses (.rntxt) are chord labels, not the music: no folder of them is a corpus
NOT_SCORES = {".rntxt", ".py", ".json", ".txt", ".pyc"}


def corpus_folders() -> dict[str, list[str]]:
    """music21's corpus by folder (a composer or a collection: palestrina, essenFolksong, ...):
    name -> its score files as corpus paths ("monteverdi/madrigal.3.1.mxl"), every format music21
    reads (MusicXML, .mxl, kern, ABC, MIDI, ...)."""
    from music21 import common
    root = Path(common.getCorpusFilePath())
    suffixes = readable_suffixes() - NOT_SCORES
    folders = {}
    for folder in sorted(root.iterdir(), key=lambda p: p.name.lower()):
        if folder.is_dir() and not folder.name.startswith(("_", ".")):
            files = [p.relative_to(root).as_posix() for p in sorted(folder.rglob("*"))
                     if p.is_file() and p.suffix.lower() in suffixes]
            if files:
                folders[folder.name] = files
    return folders


def readable_suffixes() -> set[str]:
    """File endings music21 can parse."""
    from music21 import converter
    suffixes = set()
    for sub_converter in converter.Converter().subConvertersList():
        suffixes.update(f".{ext}" for ext in sub_converter.registerInputExtensions)
    return suffixes


def find_score_files(paths: list[str]) -> tuple[list[str], list[str]]:
    """Score files named by `paths` (files, or folders searched recursively), and the paths
    that do not exist."""
    suffixes = readable_suffixes()
    found, missing = [], []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found.extend(str(p) for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in suffixes)
        elif path.is_file():
            found.append(str(path))
        else:
            missing.append(name)
    return found, missing


@dataclass
class EncodedFile:
    source: str
    records: list[dict]
    error: str | None
    losses: Counter


def _key_name(score, piece: language.Piece) -> str:
    """The key as the file states it (a music21 Key with a mode), else a guess from the key
    signature and the bass's last note: chorales end on the tonic."""
    from music21 import key
    for element in score.recurse().getElementsByClass(key.Key):
        return f"{element.tonic.name.replace('-', 'b')} {element.mode}"
    sharps = piece.measures[0].key or 0
    major = key.KeySignature(sharps).asKey("major")
    minor = key.KeySignature(sharps).asKey("minor")
    bass_pitches = [e.pitch for m in piece.measures for e in m.voices[-1] if e.pitch]
    chosen = minor if bass_pitches and \
        language.midi_number(bass_pitches[-1]) % 12 == minor.tonic.pitchClass else major
    return f"{chosen.tonic.name.replace('-', 'b')} {chosen.mode}"


def record_for(piece: language.Piece, record_id: str, source: str, key_name: str) -> dict:
    text = piece.to_text()
    first = piece.measures[0]
    return {
        "id": record_id,
        "source": source,
        "text": text,
        "key": key_name,
        "key_signature": first.key,
        "time_signature": first.time,
        "measures": len(piece.measures),
        "voices": piece.num_voices,
        "notes": sum(len(e.pitches) or 1 for m in piece.measures for v in m.voices for e in v),  # chord notes each
        "tokens": len(text.split()),
        "voice_ranges": language.voice_ranges(piece),
        "transposition": "P1",
    }


def encode_file(source: str, melody: bool = False, instruments: str = "voices") -> EncodedFile:
    """Parse one file (a corpus path like "bach/bwv66.6.mxl" or a file path) and encode it (with
    `melody`, its top voice alone: the soprano of a chorale, the first voice of the first part
    encoded, the voices' parts alone; `instruments`: what becomes of the parts beside the voices,
    language.INSTRUMENTS). Runs in worker processes; never raises for a bad file, it reports the
    error instead."""
    from music21 import stream
    stats = language.EncodeStats()
    try:
        parsed = language.read_score(source)  # a file, or a corpus path ("bach/bwv66.6.mxl")
        # an ABC or other file may hold several pieces (an Opus)
        scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
        records = []
        for number, score in enumerate(scores):
            piece = language.piece_from_score(score, stats, "voices" if melody else instruments)
            if melody and piece.measures:
                piece = melody_of(piece)
            if not piece.measures or all(e.pitch is None for m in piece.measures for v in m.voices for e in v):
                raise ValueError("no notes")
            record_id = Path(source).stem + (f"#{number + 1}" if len(scores) > 1 else "")
            records.append(record_for(piece, record_id, source, _key_name(score, piece)))
        return EncodedFile(source, records, None, stats.counts)
    except Exception as error:  # any unreadable file is reported and skipped, never fatal
        message = " ".join(str(error).split())[:200] or type(error).__name__
        return EncodedFile(source, [], message, stats.counts)


def melody_of(piece: language.Piece) -> language.Piece:
    """The piece's top voice alone, as one line: a chord in it keeps its highest note."""
    top = piece.top_voice()
    for measure in top.measures:
        measure.voices = [[language.Event(e.pitch, e.duration, e.tie, e.fermata, e.grace) for e in measure.voices[0]]]
    return top


def split_records(records: list[dict], fractions: tuple[float, float, float], seed: int) -> dict[str, list[dict]]:
    """Split by piece, deterministically: pieces with identical text form one group, and a group
    never straddles two splits. Validation and test get their share first, train the rest."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(record["text"], []).append(record)
    # order groups by a seeded hash of their text: stable under reordering of the input
    ordered = sorted(groups.values(), key=lambda g: hashlib.sha256(f"{seed}:{g[0]['text']}".encode()).hexdigest())
    total = len(records)
    targets = {"validation": round(total * fractions[1]), "test": round(total * fractions[2])}
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for group in ordered:
        for name in ("validation", "test"):
            if len(splits[name]) < targets[name]:
                splits[name].extend(group)
                break
        else:
            splits["train"].extend(group)
    for name in SPLITS:
        splits[name].sort(key=lambda r: r["id"])
    return splits


# ----------------------------------------------------------------------------- augmentation

# Semitone shifts tried by --transpose: every key within a tritone (6 up covers 6 down).
TRANSPOSE_SEMITONES = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6)


def corpus_voice_ranges(records: list[dict]) -> dict[int, list[tuple[int, int]]]:
    """Per number of voices, each voice's (lowest, highest) MIDI number over `records`."""
    ranges: dict[int, list[list[int]]] = {}
    for record in records:
        per_voice = ranges.setdefault(record["voices"], [[128, -1] for _ in range(record["voices"])])
        for bounds, voice_range in zip(per_voice, record["voice_ranges"]):
            if voice_range:
                bounds[0], bounds[1] = min(bounds[0], voice_range[0]), max(bounds[1], voice_range[1])
    return {n: [tuple(b) for b in per_voice] for n, per_voice in ranges.items()}


def transposed_records(record: dict, ranges: list[tuple[int, int]]) -> list[dict]:
    """Copies of `record` in other keys: each semitone shift that keeps every voice inside its
    corpus range, spelled with the interval that gives the key signature with fewer accidentals."""
    out = []
    for semitones in TRANSPOSE_SEMITONES:
        fits = all(vr is None or (lo <= vr[0] + semitones and vr[1] + semitones <= hi)
                   for vr, (lo, hi) in zip(record["voice_ranges"], ranges))
        if not fits:
            continue
        moved = language.transposed_by(record["text"], semitones)
        if moved is not None:
            out.append(_transposed_record(record, moved[1], moved[0], semitones))
    return out


def transposed_copies(train: list[dict]) -> list[dict]:
    """Transposed copies of the training pieces, inside each voice's range in that split
    (generate_data.py --transpose; each fold of a cross-validation, from its own training pieces)."""
    ranges = corpus_voice_ranges(train)
    return [copy for record in train for copy in transposed_records(record, ranges[record["voices"]])]


def _transposed_record(record: dict, text: str, interval_name: str, semitones: int) -> dict:
    tonic, mode = record["key"].split(" ", 1)
    return record | {
        "id": f"{record['id']}@{interval_name}",
        "text": text,
        "key": f"{_transposed_tonic(tonic, interval_name)} {mode}",
        "key_signature": record["key_signature"] + language.key_signature_shift(interval_name),
        "voice_ranges": [vr and (vr[0] + semitones, vr[1] + semitones) for vr in record["voice_ranges"]],
        "transposition": interval_name,
    }


def _transposed_tonic(tonic: str, interval_name: str) -> str:
    moved = language.transpose_pitch(f"{tonic}4", interval_name)
    return moved[:-1] if moved else tonic


# ----------------------------------------------------------------------------- output

def percentiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    def at(q):
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"min": ordered[0], "median": statistics.median(ordered), "p90": at(0.9), "p99": at(0.99),
            "max": ordered[-1]}


def write_jsonl_atomic(path: Path, records: list[dict]) -> None:
    from scorelm import files
    with files.replacing(path) as temporary, open(temporary, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# What a dataset record holds (generate_data.py writes them): "text" must be there; the others,
# where present, must have their type (None allowed).
RECORD_FIELDS = {"text": str, "id": str, "source": str, "key": str, "key_signature": int, "time_signature": str,
                 "measures": int, "voices": int, "notes": int, "tokens": int, "voice_ranges": list,
                 "transposition": str}


def record_problem(record) -> str | None:
    """What is wrong with one record, or None."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    if "text" not in record:
        return 'no "text" field'
    for field, kind in RECORD_FIELDS.items():
        value = record.get(field)
        if (value is None and field != "text") or (isinstance(value, kind) and not isinstance(value, bool)):
            continue
        return f'field "{field}" should be {kind.__name__}, not {type(value).__name__}'
    if record.get("voices") is not None and record["voices"] < 1:
        return 'field "voices" should be at least 1'
    return None


def read_records(path: Path) -> list[dict]:
    """A split's records, each checked against RECORD_FIELDS: a bad line is one error naming the
    file, the line and the field."""
    from scorelm.cli import UserError
    records = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as error:
                    raise UserError(f"{path} line {number}: not JSON ({error.msg})") from None
                problem = record_problem(record)
                if problem:
                    raise UserError(f"{path} line {number}: {problem}")
                records.append(record)
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    return records

