#!/usr/bin/env bash
# There, on the lent GPU machine (after tools/gpu/prepare.sh here, with .gpu carried):
#   bash tools/gpu/run.sh [HOURS] [EXTRA_TRAIN_ARGS_JSON]
# Installs the carried wheels, converts NEU-DET with the seeded split, proves that
# --device auto takes CUDA and that nothing is downloaded, trains for HOURS (a new stage
# from .gpu/start.pt if present, a best.pt brought back from an earlier call, else from
# the recipe), evaluates, exports ONNX and predicts with it, and puts the run (best.pt,
# last.pt, results.csv, args.yaml) and report.json in $OUT. A call must end within the
# device tool's 10 minutes: HOURS 0.12 leaves about 2 for the rest.
set -euo pipefail
hours=${1:-0.12}
extra=${2:-'{}'}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH="$PWD/tools/gpu/shim:/tmp/site:$PWD" PYTHONUNBUFFERED=1
export YOLO_CONFIG_DIR=/tmp/yolo FIFTYONE_DATABASE_VALIDATION=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 - <<'PY'
import torch; from detection.train import decide_amp
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
print("amp", decide_amp(torch.nn.Linear(1, 1).cuda()))
PY
python3 -m detection.cli convert .gpu/NEU-DET --out /tmp/neu-det --split 0.8,0.2 --seed 0
start=yolo11n.yaml
[ -f .gpu/start.pt ] && start=.gpu/start.pt
python3 - "$start" "$hours" "$extra" <<'PY'
import json, socket, sys, time
# No download may be attempted (ultralytics' AMP check would load yolo26n.pt): record
# every name lookup off loopback in this process, where training and that check run.
attempts = []
def lookup(host, *args, real=socket.getaddrinfo, **kwargs):
    if host not in ("localhost", "127.0.0.1", "::1", None):
        attempts.append(host)
    return real(host, *args, **kwargs)
socket.getaddrinfo = lookup
from detection.train import train
start, hours, extra = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
began = time.time()
run = train("/tmp/neu-det", "gpu", model=start, device="auto", weights_dir="/tmp/weights",
            seed=0, workers=8, hours=hours, extra={"plots": False, **extra})
args = (run / "args.yaml").read_text()
import torch
print(f"trained {(time.time() - began) / 3600:.3f} h; CUDA memory used by training:",
      f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB;",
      [line for line in args.splitlines() if line.startswith(("device", "amp"))])
print("network attempts:", attempts or "none")
PY
python3 -m detection.cli evaluate --weights /tmp/weights/gpu/best.pt --data /tmp/neu-det \
  --out /tmp/report --bootstrap 200 --no-ultralytics | tail -3
python3 -m detection.cli export --weights /tmp/weights/gpu/best.pt
python3 -m detection.cli predict .gpu/NEU-DET/IMAGES/crazing_1.jpg .gpu/NEU-DET/IMAGES/patches_1.jpg \
  --weights /tmp/weights/gpu/best.pt --backend onnx --out /tmp/predicted --no-images
cp /tmp/weights/gpu/{best.pt,last.pt,results.csv,args.yaml} /tmp/report/report.json "$OUT"/
