#!/usr/bin/env bash
# There, on the lent GPU machine (after tools/gpu/prepare.sh here, with .gpu carried):
#   bash tools/gpu/run.sh HOURS BATCH VARIANT...
# VARIANT is NAME:MODEL:IMGSZ[:KILL[:TEACHER[:SETS]]], trained in weights/gpu/NAME.
# MODEL: yolo11n.yaml (from scratch); a .pt to start a new stage from (.gpu/start.pt,
#   weights/gpu/OTHER/best.pt left by an earlier call while the machine stayed warm); a
#   released name (neu-det); or `resume`: continue weights/gpu/NAME, paused by the call
#   before (the machine stays warm 30 s after a call: call again at once).
# KILL: SECONDS kills that training with SIGKILL after so many seconds and continues it
#   with --resume, to prove resume on the device; pause@SECONDS kills it and leaves it
#   for the next call's `resume`, so one --hours schedule spans several 10-minute calls
#   (its clock goes on over each resume: detection/train.py).
# TEACHER: a trained detector to distil from (`defects train --teacher`), such as
#   weights/gpu/OTHER/best.pt left by an earlier call: s:yolo11n.yaml:320::weights/gpu/t/best.pt.
# SETS: other training arguments, KEY=VALUE separated by commas, each given as --set (a
#   stage from trained weights: kd:neu-det:416::t.pt:optimizer=AdamW,lr0=0.0002,warmup_epochs=0;
#   lr0 counts only with an optimizer named: `defects train` refuses it alone);
#   activation=relu is given as `defects train --activation relu` (a stage that teaches
#   the release ReLU: r416:neu-det:416:::optimizer=AdamW,lr0=0.0005,warmup_epochs=0,
#   close_mosaic=0,activation=relu).
#   channels=1 trains on grey images, channels=3 on colour ones (a copy of the data.yaml
#   with that `channels`, whatever the converted one says; every model is evaluated on the
#   converted data as any other). NEU-DET converts to grey images (`channels: 1` in
#   datasets/neu-det.yaml), so channels=3 trains as the colour release was trained:
#   c416:yolo11n.yaml:416:::channels=3, or a stage from it in colour,
#   r416:neu-det:416:::optimizer=AdamW,lr0=0.0002,channels=3.
# The variants train side by side (one leaves the GPU idle: a nano model at 224 px is
# bound by its data loader), each through `defects train --device auto` for HOURS, then
# each is scored by `defects evaluate` (pycocotools, and ultralytics' val beside it); the
# best is exported to ONNX and predicts with it. Every name lookup off loopback in every
# Python process is recorded (probe/).
# $OUT gets NAME.tar per variant (best.pt, results.csv, args.yaml, report, train.log,
# console.log, evaluate.log; last.pt too when paused), written as soon as that variant is
# scored, and lookups.txt. A tar over the 16 MiB a file may have to come back (yolo11s)
# comes in 15 MiB pieces, NAME.tar.00, .01...: here, `cat NAME.tar.* | tar -x -C
# weights/gpu`. The records alone let a card state how a teacher was trained. A call
# must end within the device tool's 10 minutes: HOURS 0.11 (or pause@480) leaves about
# 2.5 for the rest.
set -euo pipefail
hours=$1 batch=$2
shift 2
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH="$PWD/tools/gpu/probe:$PWD/tools/gpu/shim:/tmp/site:$PWD" PYTHONUNBUFFERED=1
export YOLO_CONFIG_DIR=/tmp/yolo FIFTYONE_DATABASE_VALIDATION=false
export LOOKUP_LOG=$OUT/lookups.txt
touch "$LOOKUP_LOG"
defects() { python3 -m detection.cli "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc
python3 - <<'PY'
import torch; from detection.train import decide_amp
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
print("amp", decide_amp(torch.nn.Linear(1, 1).cuda()))
PY
[ -d /tmp/neu-det ] || defects convert .gpu/NEU-DET --out /tmp/neu-det --split 0.8,0.2 --seed 0 | tail -2
workers=$(( $(nproc) / $# - 1 ))
began=$(date +%s)
for variant in "$@"; do
  IFS=: read -r name model imgsz kill teacher sets <<<"$variant"
  overrides=() data=/tmp/neu-det
  IFS=, read -r -a pairs <<<"${sets:-}"
  for pair in "${pairs[@]}"; do
    case "$pair" in
      activation=*) overrides+=(--activation "${pair#activation=}") ;;  # its own option
      # Grey (1) or colour (3) images: the data.yaml's own setting, on a copy beside it.
      channels=1 | channels=3) data=/tmp/neu-det/channels-${pair#channels=}.yaml
        { grep -v '^channels:' /tmp/neu-det/data.yaml; echo "channels: ${pair#channels=}"; } > "$data" ;;
      *) overrides+=(--set "$pair") ;;
    esac
  done
  mkdir -p weights/gpu/"$name"
  [ "$model" = resume ] || rm -f weights/gpu/"$name"/{train,console}.log  # a paused run's go on
  ( set +e; (
    # plots=False: the polars stand-in (tools/gpu/shim) has no data frame for ultralytics'
    # results plot, which the ft416 call (2026-12-04) logged as "ERROR ... Plotting error";
    # defects evaluate draws the report's plots.
    train=(train --data "$data" --model "$model" --name "$name" --weights-dir weights/gpu
      --imgsz "$imgsz" --batch "$batch" --workers "$workers" --hours "$hours" --seed 0
      ${teacher:+--teacher "$teacher"} --set plots=False "${overrides[@]}")
    if [ "$model" = resume ]; then
      echo "=== resumed (an earlier call paused it)"
      train=(train --name "$name" --weights-dir weights/gpu --resume)
    fi
    case "${kill:-}" in
      "") defects "${train[@]}" ;;
      pause@*)
        timeout -s KILL "${kill#pause@}" python3 -m detection.cli "${train[@]}" \
          || echo "=== paused: $?; the next call continues it with $name:resume:$imgsz" ;;
      *)
        timeout -s KILL "$kill" python3 -m detection.cli "${train[@]}" || echo "killed: $?"
        echo "=== resumed"
        defects train --name "$name" --weights-dir weights/gpu --resume ;;
    esac
  ) >>weights/gpu/"$name"/console.log 2>&1
  defects evaluate --weights weights/gpu/"$name"/best.pt --data /tmp/neu-det \
    --out weights/gpu/"$name"/report --bootstrap 200 >weights/gpu/"$name"/evaluate.log 2>&1
  # last.pt only for a paused run, which continues from it; a finished run's next stage
  # starts from best.pt, and yolo11s' last.pt would add another 19 MB.
  paused=()
  [[ "${kill:-}" == pause@* ]] && paused=("$name"/last.pt)
  tar -cf "$OUT/$name.tar" -C weights/gpu --ignore-failed-read "$name"/{best.pt,results.csv,args.yaml} \
    "${paused[@]}" "$name"/{train.log,console.log,evaluate.log} "$name"/report/{report.json,report.md} 2>/dev/null
  # A file over the 16 MiB that come back whole travels in pieces: NAME.tar.00, .01, ...
  if [ "$(stat -c %s "$OUT/$name.tar")" -gt $((16 << 20)) ]; then
    split -b 15M -d "$OUT/$name.tar" "$OUT/$name.tar." && rm "$OUT/$name.tar"
  fi
  ) &
done
wait
echo "trained and evaluated in $(( $(date +%s) - began )) s"
set +e  # one failed variant must not cost the others their reports
best="" best_map=-1
for variant in "$@"; do
  IFS=: read -r name _ <<<"$variant"
  run=weights/gpu/$name
  grep -E "^(amp|epochs|time|imgsz|batch|workers):" "$run"/args.yaml | tr '\n' ' '
  echo "epochs done: $(( $(wc -l <"$run"/results.csv) - 1 ))"
  grep -E -m1 "CUDA:|CPU \(" "$run"/train.log
  grep -E "killed|paused|resumed|Resuming|AMP|rror" "$run"/console.log | grep -v Plotting | head -6
  tail -3 "$run"/evaluate.log
  map=$(python3 -c "import json; r = json.load(open('$run/report/report.json'));
print(r['mAP50'], r['mAP50-95'], {k: r['ultralytics'][k] for k in ('mAP50', 'mAP50-95')})") || continue
  echo "$name: $map"
  if python3 -c "import sys; sys.exit(not float('${map%% *}') > float('$best_map'))"; then
    best=$name best_map=${map%% *}
  fi
done
echo "best: $best"
defects export --weights weights/gpu/"$best"/best.pt 2>&1 | tail -2
defects predict .gpu/NEU-DET/IMAGES/crazing_1.jpg .gpu/NEU-DET/IMAGES/patches_1.jpg \
  --weights weights/gpu/"$best"/best.pt --backend onnx --out /tmp/predicted --no-images 2>&1 | tail -3
defects predict .gpu/NEU-DET/IMAGES/crazing_1.jpg --weights weights/gpu/"$best"/best.pt \
  --device auto --out /tmp/predicted-torch --no-images 2>&1 | tail -2
lookups=$(sort -u "$LOOKUP_LOG" | tr '\n' ' ')
echo "name lookups off loopback: ${lookups:-none}"
