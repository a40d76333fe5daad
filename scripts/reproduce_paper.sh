#!/usr/bin/env bash
# From nothing to the uCLIP paper's tables (Tables 1-2): see docs/reproduce.md.
#
#   scripts/reproduce_paper.sh DATA_ROOT NUM_GPUS [--dry-run] [--random-init] [--config CONFIG]
#
# Resumable: every step is skipped when its output exists, and the steps that run resume
# themselves (uclip extract keeps finished tars, uclip train --resume its checkpoints), so after
# a failure or a kill, rerun the same command. --dry-run prints what each step would do (and
# runs `uclip train --dry-run`), changing nothing. --random-init builds random towers instead of
# downloading checkpoints: a pipeline check only, its numbers mean nothing.
# NUM_GPUS=0 runs everything on the CPU without torchrun (only sensible for a tiny layout).
set -euo pipefail

usage() { echo "usage: $0 DATA_ROOT NUM_GPUS [--dry-run] [--random-init] [--config CONFIG]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
ROOT=$(realpath -m "$1"); NGPUS=$2; shift 2
[[ $NGPUS =~ ^[0-9]+$ ]] || usage
DRY=0; RANDOM_INIT=(); CONFIG=configs/uclip-b32-mpnet.json
while [[ $# -gt 0 ]]; do
  case $1 in
    --dry-run) DRY=1 ;;
    --random-init) RANDOM_INIT=(--random-init) ;;
    --config) CONFIG=$2; shift ;;
    *) usage ;;
  esac
  shift
done
REPO=$(cd "$(dirname "$0")/.." && pwd)
[[ -f $CONFIG ]] || CONFIG=$REPO/$CONFIG
NAME=$(basename "$CONFIG" .json)
# The config's towers, read from the config itself so this script never disagrees with it.
read -r IMAGE_TOWER TEXT_TOWER < <(python -c "import json,sys; m=json.load(open(sys.argv[1]))['model']; print(m['image_encoder'], m['multilingual_encoder'])" "$CONFIG")

SHARDS=${SHARDS:-"$ROOT/shards/{00000..00199}.tar"}          # image bank V (img2dataset output)
CAPTION_SHARDS=${CAPTION_SHARDS:-"$ROOT/shards/{00200..00399}.tar"}  # English captions, other images
LANGS=${LANGS:-cs,fi,hr,hu,ro}
EVAL_DATA=${EVAL_DATA:-$ROOT/eval-data}                       # uclip's evaluation captions/prompts
IMAGES=${IMAGES:-$ROOT/images}                                # xm3600/ coco/ flickr30k/ cifar10/ stl10/
DEVICE=cuda; [[ $NGPUS -eq 0 ]] && DEVICE=cpu
RUN=$ROOT/runs/$NAME

launch() {  # one process per GPU under torchrun; plain uclip on the CPU
  if [[ $NGPUS -gt 1 ]]; then torchrun --standalone --nproc-per-node "$NGPUS" -m uclip.cli "$@"
  else uclip "$@"; fi
}
step() {  # step NAME OUTPUT COMMAND...: skip when OUTPUT exists, print instead of run on --dry-run
  local name=$1 output=$2; shift 2
  if [[ -e $output ]]; then echo "[skip] $name: $output exists"; return; fi
  if [[ $DRY -eq 1 ]]; then echo "[todo] $name -> $output"; return; fi
  echo "[run ] $name -> $output"; "$@"
}
need() {  # need WHAT PATH HOW: a user-provided input; stop with instructions when missing
  if [[ -e $2 ]]; then echo "[have] $1: $2"; return; fi
  echo "[need] $1: $2 is missing. $3" >&2
  [[ $DRY -eq 1 ]] || exit 1
}

echo "uCLIP reproduction: config $NAME, data root $ROOT, $NGPUS GPU(s), device $DEVICE"
[[ $DRY -eq 1 ]] || mkdir -p "$ROOT/uclip" "$ROOT/extract" "$ROOT/runs"

# 1. Checkpoints (Hugging Face cache; uclip never downloads by itself).
download() { huggingface-cli download "$1" && touch "$2"; }
if [[ ${#RANDOM_INIT[@]} -eq 0 ]]; then
  for tower in "$IMAGE_TOWER" "$TEXT_TOWER"; do
    hf_id=$(python -c "from uclip.encoders.registry import get_spec; import sys; print(get_spec(sys.argv[1]).hf_id)" "$tower")
    marker=$ROOT/.done-download-${hf_id//\//--}
    step "huggingface-cli download $hf_id" "$marker" download "$hf_id" "$marker"
  done
else
  echo "[skip] checkpoints: --random-init (pipeline check, numbers are meaningless)"
fi

# 2. Image shards and English captions (see docs/reproduce.md for img2dataset).
first_shard=$(python -c "from uclip.data.webdataset import expand_braces; import sys; print(expand_braces(sys.argv[1])[0])" "$SHARDS")
need "image shards" "$first_shard" "Download them with img2dataset (docs/reproduce.md, step 2) or set SHARDS='DIR/{00000..00199}.tar'."
need "English training captions" "$ROOT/uclip/english_captions.txt" "Take the captions of shards that are not in the bank ($CAPTION_SHARDS): docs/reproduce.md, step 2."
need "multilingual text bank" "$ROOT/uclip/text_bank" "Put one UTF-8 file per language (${LANGS//,/.txt, }.txt) there, one sentence per line (docs/reproduce.md, step 3)."

# 3. Bank V: the config's image tower over the shards, split across GPUs, then merged.
extract_bank() {  # extract_bank ENCODER INPUTS WORKDIR OUTPUT
  launch extract --encoder "$1" "${RANDOM_INIT[@]}" --inputs "$2" --out "$3" --device "$DEVICE" --no-progress
  uclip extract-merge --out "$3" --output "$4"
}
step "uclip extract $IMAGE_TOWER over $SHARDS on $NGPUS GPU(s), then extract-merge" \
  "$ROOT/uclip/image_bank_2M.npy" \
  extract_bank "$IMAGE_TOWER" "$SHARDS" "$ROOT/extract/image" "$ROOT/uclip/image_bank_2M.npy"

# 4. Bank M: the multilingual tower over every language file, split across GPUs, then merged.
TEXT_BANK_NPY=$ROOT/uclip/text_bank_${TEXT_TOWER}.npy
extract_text_bank() {
  cat "$ROOT"/uclip/text_bank/*.txt > "$ROOT/extract/text_bank_all.txt"
  extract_bank "$TEXT_TOWER" "$ROOT/extract/text_bank_all.txt" "$ROOT/extract/text" "$TEXT_BANK_NPY"
}
step "uclip extract $TEXT_TOWER over uclip/text_bank/*.txt on $NGPUS GPU(s), then extract-merge" \
  "$TEXT_BANK_NPY" extract_text_bank

# 5. Train the heads (the captions are embedded once through the cache by rank 0).
TRAIN_ARGS=("$CONFIG" --data-dir "$ROOT" "${RANDOM_INIT[@]}" --set "train.device=\"$DEVICE\"")
read -r -a EXTRA_TRAIN_ARGS <<< "${EXTRA_TRAIN_ARGS:-}"  # e.g. "--set train.max_steps=3"
if [[ -e $TEXT_BANK_NPY || $DRY -eq 0 ]]; then
  TRAIN_ARGS+=(--set "data.text_bank=\"uclip/$(basename "$TEXT_BANK_NPY")\"")
fi
if [[ $DRY -eq 1 ]]; then
  echo "[plan] uclip train --dry-run (banks as they are now):"
  uclip train "${TRAIN_ARGS[@]}" "${EXTRA_TRAIN_ARGS[@]}" --dry-run \
    || echo "[plan] the dry run stopped: fix the inputs above first"
fi
step "uclip train $NAME on $NGPUS GPU(s)" "$RUN/model/config.json" \
  launch train "${TRAIN_ARGS[@]}" "${EXTRA_TRAIN_ARGS[@]}" --out "$RUN" --resume

# 6. Evaluate: retrieval (Table 1) and zero-shot classification (Table 2) on the user's images.
evaluate() {  # evaluate TASK DATASET FOLDER
  local extra=(); [[ $1 == retrieval ]] && extra=(--protocol first)
  uclip eval "$1" --model "uclip:$RUN/model" "${RANDOM_INIT[@]}" --dataset "$2" --images "$3" \
    --data-dir "$EVAL_DATA" --langs "$LANGS" "${extra[@]}" --device "$DEVICE" --out "$RUN/eval" \
    --no-progress
  touch "$RUN/eval/.done-$1-$2"
}
for spec in retrieval:xm3600 retrieval:coco5k retrieval:flickr30k zeroshot:cifar10 zeroshot:stl10; do
  task=${spec%%:*}; dataset=${spec#*:}; folder=$IMAGES/${dataset%5k}
  if [[ ! -d $folder ]]; then
    echo "[need] $task $dataset: images in $folder (docs/reproduce.md, step 6)"; continue
  fi
  step "uclip eval $task --dataset $dataset" "$RUN/eval/.done-$task-$dataset" \
    evaluate "$task" "$dataset" "$folder"
done

# 7. The run beside the paper's numbers (eval/reported_numbers.json).
step "uclip report --reported" "$RUN/tables/summary.md" uclip report "$RUN/eval" --out "$RUN/tables" --reported
