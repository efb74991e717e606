#!/usr/bin/env bash
# Prepare what the GPU check (bench/gpu_check.sh) carries to a lent device machine, which has
# Python 3.12 with torch, onnx, onnxruntime (CPU), numpy, scipy, OpenCV, rich, matplotlib,
# msgpack, PyYAML and attrs, and can download nothing:
#   .whl/      wheels of what rtpose needs beyond that (sleap-io, pyzmq, pydantic), for Python 3.12
#   .gpudata/  the fly clip and its labels (RTPOSE_DATA there)
# Both folders are ignored through .git/info/exclude. Then, with the device tool:
#   run(command="bash bench/gpu_check.sh", carry=[".whl", ".gpudata"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RTPOSE_DATA:-$(cd .. && pwd)/shared/data}
EXCLUDE=$(git rev-parse --git-common-dir)/info/exclude
for d in /.whl/ /.gpudata/; do grep -qxF "$d" "$EXCLUDE" 2>/dev/null || echo "$d" >> "$EXCLUDE"; done
rm -rf .whl .gpudata && mkdir -p .whl .gpudata/flies13
# --no-deps: sleap-io's other needs are either on the device (h5py, imageio, pandas, ...) or
# imported by sleap-io only for formats rtpose does not use (NWB, skia rendering).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  sleap-io==0.9.5 pyzmq==27.3.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
  typing-inspection==0.4.5 lazy-loader
cp "$DATA/flies13/clip.mp4" "$DATA/flies13/clip.trainval.slp" "$DATA/flies13/clip.close.slp" .gpudata/flies13/
du -sh .whl .gpudata
