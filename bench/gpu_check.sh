#!/usr/bin/env bash
# Issue 14: the GPU path on a lent device machine, in one call that prints everything.
# Prepare here first (bench/gpu_prepare.sh: wheels + data into ignored folders), then with the
# device tool:  run(command="bash bench/gpu_check.sh", carry=[".whl", ".gpudata"], timeout_s=540)
# Every step runs even when one before it fails; the last lines are the table to read.
# Figures land in $OUT (the device tool brings them back): parity.json, bench.json, bench.png,
# live.json, tests.log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 RTPOSE_DATA=$PWD/.gpudata
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
VIDEO=$RTPOSE_DATA/flies13/clip.mp4
MODEL=${MODEL:-models/flies13}
status() { printf '%-10s %s\n' "$1" "$2" >> "$OUT/status.txt"; }

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
python3 -c "import torch, onnxruntime; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), '| onnxruntime', onnxruntime.__version__)"
lscpu | grep 'Model name'

echo "== 1. tests of the GPU path (they skip without CUDA; here they must run)"
timeout 240 python3 -m pytest -q -rs tests/test_engine.py tests/test_train_export.py -k "cuda or torch or rebuild" 2>&1 | tee "$OUT/tests.log" | tail -5
status tests "$(tail -1 "$OUT/tests.log")"

echo "== 2. parity: torch-cuda (FP16) vs ort-cpu, frames 1200-1299"
timeout 240 python3 bench/gpu_parity.py -m "$MODEL" -i "$VIDEO" --frames 1200-1299 --json "$OUT/parity.json" | tail -1
status parity "rc=$?"

echo "== 3. batch-1 round trip and throughput (rtpose bench --engine torch-cuda)"
timeout 240 python3 -m rtpose bench -m "$MODEL" -i "$VIDEO" --frames 1200-1299 --engine torch-cuda \
  --json "$OUT/bench.json" --histogram "$OUT/bench.png" --overwrite
status bench "rc=$?"

echo "== 4. live run at 150 FPS for 10 s on torch-cuda"
timeout 120 python3 -m rtpose run experiments/male_approach_replay.yaml --set model.engine=torch-cuda \
  --set duration=10 --summary "$OUT/live.json" --overwrite
status live "rc=$?"

echo "== summary"
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    p = out / name
    return json.loads(p.read_text()) if p.exists() else None
par, bench, live = load("parity.json"), load("bench.json"), load("live.json")
if par:
    d = par["deviation_px"]
    print(f"parity    max {d['max']} px, median {d['median']} px over {par['points_compared']} points; "
          f"same instance count {par['same_instance_count']:.3f}; identity agreement {par['identity_agreement']}")
if bench:
    lat = bench["latency_ms"]
    best = max(bench.get("fps_at_batch_size", {}).items(), key=lambda kv: kv[1], default=(None, None))
    print(f"bench     p50 {lat['p50']:.3f} ms  p99 {lat['p99']:.3f} ms  max {lat['max']:.3f} ms  "
          f"(targets 1.0 / 1.5 ms); best throughput {best[1]} frames/s at batch {best[0]} (target 3000)")
if live:
    fr = live["frames"]
    lat = live["latency_ms"]
    print(f"live      acquired {fr['acquired']} processed {fr['processed']} dropped {fr['dropped']} "
          f"{fr.get('dropped_by_reason')}; exposure->output {lat.get('exposure_to_output')}; "
          f"overhead {lat.get('overhead')}; outputs after {live.get('outputs_final_volts')}")
PY
cat "$OUT/status.txt"
