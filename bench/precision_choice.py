"""How long ``precision: auto``'s decision takes here, and what it decides.

The flies13 centered-instance network of ``experiments/train/flies13_close.yaml``
(batch 16, 144x144 crops): ``rtpose.train.precision._timed_choice`` as training runs it,
``--repeats`` times per thread count. Prints the wall seconds of each decision (network
builds included: what it takes out of the training budget) and its log line. On a CPU
without bf16 there is nothing to time (``auto`` is fp32 at once).

    python bench/precision_choice.py [--threads 2 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import yaml

from rtpose.machine import cpu_flags, cpu_name
from rtpose.nn.models import InstanceArch
from rtpose.train.config import TrainConfig
from rtpose.train.precision import TIMING_SECONDS, _timed_choice, bf16_supported
from rtpose.train.trainer import _unet_spec

RECIPE = Path(__file__).resolve().parents[1] / "experiments/train/flies13_close.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads(), 1])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cfg = TrainConfig.model_validate(yaml.safe_load(RECIPE.read_text()))
    arch = InstanceArch(unet=_unet_spec(cfg.instance.unet), crop_size=cfg.instance.crop_size, sigma=cfg.instance.sigma,
                        n_nodes=13, n_classes=2)
    print(f"{cpu_name()}, {os.cpu_count()} cores, flags {' '.join(cpu_flags())}, torch {torch.__version__}, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not bf16_supported(torch.device("cpu")):
        print("no native bf16 here: precision auto is fp32 without timing")
        return
    shape = (cfg.instance.optim.batch_size, 1, arch.crop_size, arch.crop_size)
    for threads in dict.fromkeys(args.threads):
        torch.set_num_threads(threads)
        for _ in range(args.repeats):
            t = time.perf_counter()
            choice = _timed_choice(torch.device("cpu"), arch.build, shape, TIMING_SECONDS)
            print(f"{threads} thread{'s' if threads > 1 else ''}: {time.perf_counter() - t:.1f} s -> {choice.reason}",
                  flush=True)


if __name__ == "__main__":
    main()
