"""Why the networks are shaped as they are: ONNX Runtime batch-1 latency of UNet variants.

Usage: .venv/bin/python bench/arch_latency.py [--threads 2]

Times random-weight networks (latency does not depend on the weights) for the centroid
input (1/8 of a 1024 px frame) and two 144 px crops: SLEAP's layout (first level at full
resolution) against a stride-2 stem, and channel counts that are or are not multiples of
16 (ONNX Runtime's AVX-512 blocked convolutions). Prints the machine it ran on.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from rtpose.machine import cpu_name
from rtpose.nn.models import InstanceNet
from rtpose.nn.unet import UNetSpec, fold_batchnorm

VARIANTS = [
    ("centroid 128 px, SLEAP layout (stem 1, f16, stride 16)", 1, 128, dict(filters=16, down_blocks=4, up_blocks=3, stem_stride=1)),
    ("centroid 128 px, stem 2, f16, max stride 16, out 2", 1, 128, dict(filters=16, down_blocks=3, up_blocks=3, stem_stride=2)),
    ("2 crops 144 px, SLEAP layout (stem 1, f16, stride 16)", 2, 144, dict(filters=16, down_blocks=4, up_blocks=3, stem_stride=1)),
    ("2 crops 144 px, stem 2, f16 (shipped)", 2, 144, dict(filters=16, down_blocks=3, up_blocks=3, stem_stride=2)),
    ("2 crops 144 px, stem 2, f24 (not a multiple of 16)", 2, 144, dict(filters=24, down_blocks=3, up_blocks=3, stem_stride=2)),
    ("2 crops 144 px, stem 2, f32", 2, 144, dict(filters=32, down_blocks=3, up_blocks=3, stem_stride=2)),
    ("2 crops 144 px, stem 2, f16, 1 decoder conv", 2, 144, dict(filters=16, down_blocks=3, up_blocks=3, stem_stride=2, decoder_convs=1)),
]


def time_network(batch: int, size: int, unet: dict, threads: int) -> float:
    net = InstanceNet(UNetSpec(**unet), n_nodes=13, n_classes=2).eval()
    fold_batchnorm(net)
    x = torch.zeros(batch, 1, size, size)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "net.onnx"
        torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.rand(batch, 1, size, size).astype(np.float32)}
    for _ in range(10):
        session.run(None, feed)
    ms = []
    for _ in range(100):
        t = time.perf_counter()
        session.run(None, feed)
        ms.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ms))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(f"ONNX Runtime {ort.__version__}, {args.threads} threads, {cpu_name()}")
    for name, batch, size, unet in VARIANTS:
        print(f"{name:58s} {time_network(batch, size, unet, args.threads):6.2f} ms (p50)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
