#!/usr/bin/env bash
# ScoreLM quick start: install, build the dataset, train a small model on the CPU, sample a
# chorale with constrained decoding and write it as MusicXML, MIDI, PNG, MP3 and a page. Offline; about
# 10 minutes on 2 cores including the install. Everything goes to quickstart/ (replaced on
# each run).
set -euo pipefail
cd "$(dirname "$0")"
out=quickstart
start=$(date +%s)

echo "== installing requirements"
python -m pip install --quiet --progress-bar off -r requirements.txt

echo "== building the dataset from music21's Bach chorales"
python generate_data.py --transpose --output "$out/dataset" --overwrite

echo "== training a small GPT-NeoX from scratch (configs/cpu_quickstart.json)"
python train.py --config configs/cpu_quickstart.json --dataset "$out/dataset" --output_dir "$out/score-lm" --overwrite

echo "== sampling a chorale"
python infer.py "|" --model "$out/score-lm" --seed 0 -o "$out/chorale.txt" --render --overwrite

python - "$out" "$start" <<'PY'
import json, sys, time
out, start = sys.argv[1], int(sys.argv[2])
test = json.load(open(f"{out}/score-lm/metrics.json"))["test"]
print(f"\nmodel: {out}/score-lm/  (test bits per note {test['bits_per_note']:.2f}, perplexity {test['perplexity']:.2f})")
print(f"chorale: {out}/chorale.txt, .musicxml, .mid, .png, .mp3; open {out}/chorale.html in a browser to see and hear it")
print(f"done in {(time.time() - start) / 60:.1f} minutes")
PY
