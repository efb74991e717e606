"""CPU time of one training step of the flies13 centered-instance network, per memory layout.

Batch 16 of 144x144 grey crops, forward, backward and Adam (AMSGrad), the trainer's own
network from ``experiments/train/flies13_close.yaml``. Prints the median CPU-ms over 10
steps for NCHW weights and for channels-last weights (what ``rtpose.train.loop.to_device``
uses on a CPU), in fp32 and, where the CPU has it, bf16 autocast.

    python bench/train_step.py [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from rtpose.machine import cpu_flags, cpu_name
from rtpose.nn.models import InstanceArch
from rtpose.train.config import TrainConfig
from rtpose.train.precision import bf16_supported, synthetic_step
from rtpose.train.trainer import _unet_spec

RECIPE = Path(__file__).resolve().parents[1] / "experiments/train/flies13_close.yaml"


def step_ms(arch: InstanceArch, channels_last: bool, precision: str, steps: int = 10) -> float:
    torch.manual_seed(0)
    model = arch.build().train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    x = torch.rand(16, 1, arch.crop_size, arch.crop_size)
    times = []
    for k in range(steps + 2):  # two warm-up steps
        t = time.process_time()
        synthetic_step(model, opt, x, torch.device("cpu"), precision)
        if k >= 2:
            times.append(time.process_time() - t)
    return float(np.median(times)) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig.model_validate(yaml.safe_load(RECIPE.read_text()))
    arch = InstanceArch(unet=_unet_spec(cfg.instance.unet), crop_size=cfg.instance.crop_size, sigma=cfg.instance.sigma,
                        n_nodes=13, n_classes=2)
    print(f"{cpu_name()}, {os.cpu_count()} cores, flags {' '.join(cpu_flags())}, torch {torch.__version__}")
    print(f"flies13 centered-instance step, batch 16, {arch.crop_size}x{arch.crop_size}, {args.threads} threads "
          "(median CPU-ms of 10 steps, all threads summed)")
    precisions = ["fp32"] + (["bf16"] if bf16_supported(torch.device("cpu")) else [])
    for precision in precisions:
        nchw, cl = step_ms(arch, False, precision), step_ms(arch, True, precision)
        print(f"  {precision}: NCHW {nchw:.0f} ms, channels-last {cl:.0f} ms ({nchw / cl:.2f}x)")


if __name__ == "__main__":
    main()
