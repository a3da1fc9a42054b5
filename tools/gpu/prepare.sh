#!/usr/bin/env bash
# Here, before a GPU run: the wheels the device machine lacks and the NEU-DET copy it
# needs, in .gpu/ (git-ignored; carried with `carry: [".gpu"]`): 38 MB, 60 MB of the
# 64 MiB that travel with the repository. Versions are the locked ones (uv.lock), for
# the Python 3.12 there.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu/whl
locked() { grep -A1 "^name = \"$1\"$" uv.lock | sed -n 's/^version = "\(.*\)"/\1/p'; }
wheels=()
for name in ultralytics-opencv-headless ultralytics-thop ultralytics-platform albumentations \
    albucore pycocotools pydantic pydantic-core stringzilla simsimd annotated-types \
    typing-inspection onnxslim; do
  wheels+=("$name==$(locked "$name")")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .gpu/whl "${wheels[@]}"
rm -rf .gpu/NEU-DET && cp -r "${NEU_DET:-../shared/datasets/NEU-DET}" .gpu/NEU-DET
bash tools/gpu/travels.sh .gpu  # what the call will carry, refused here if over 64 MiB
