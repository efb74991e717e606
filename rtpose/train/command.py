"""``rtpose train CONFIG.yaml [-o MODEL_DIR] [--resume] [--set key=value]``."""

from __future__ import annotations

import argparse

from rtpose.train.config import TrainConfig
from rtpose.train.trainer import train
from rtpose.config import load_config


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, TrainConfig, args.overrides)
    train(cfg, output=args.output, resume=args.resume)
    return 0
