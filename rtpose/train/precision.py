"""Training precision: ``fp32``, ``bf16``, or ``auto``, which times both where bf16 exists.

Why time it: a CPU that *has* bf16 (AVX-512 BF16, AMX) is not always faster with it.
Measured on the instance network's training step (batch 16, crop 144, one thread):
an AMD EPYC Zen 4 ran bf16 faster than fp32; an Intel Xeon with AVX-512 BF16 but no AMX
ran it slower on one thread of a loaded machine (407-437 vs 305-325 CPU-ms per step) and
a little faster on two idle threads (194 vs 210 ms). So ``auto`` on a CPU with bf16 runs a
few interleaved steps of each on random data of the network's shape and keeps the faster;
on a CPU without it, fp32; on CUDA, bf16 where the GPU supports it. The choice and both
timings are printed and kept in ``model.json``.
"""

from __future__ import annotations

import time
from typing import Callable

import attrs
import numpy as np
import torch

from rtpose.train.loop import autocast, to_device

_CHOSEN: dict[tuple, "PrecisionChoice"] = {}  # (device, shape, threads) -> choice, for this process


@attrs.frozen
class PrecisionChoice:
    """The precision to train in and why.

    Attributes:
        precision: ``fp32`` or ``bf16``.
        reason: one line for the log (the timings when measured).
        step_ms: median milliseconds per training step by precision, where timed.
    """

    precision: str
    reason: str
    step_ms: dict[str, float] = attrs.field(factory=dict)


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively (CUDA: compute capability; CPU: oneDNN's check)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_precision(requested: str, device: torch.device, build: Callable[[], torch.nn.Module],
                     input_shape: tuple[int, int, int, int], max_seconds: float = 6.0) -> PrecisionChoice:
    """The precision for training on ``device``.

    Args:
        requested: ``fp32``, ``bf16`` (taken as given) or ``auto``.
        device: the training device.
        build: makes a fresh network of the architecture to time (the instance network).
        input_shape: (batch, channels, height, width) of one training batch.
        max_seconds: about the most the timing may take (both precisions together).

    Returns:
        The choice; with ``auto`` on a CPU with bf16, timed by interleaved steps (forward,
        MSE backward, Adam) and the faster kept, ties (within 5%) going to fp32.
    """
    if requested != "auto":
        return PrecisionChoice(requested, "as configured")
    if not bf16_supported(device):
        return PrecisionChoice("fp32", f"auto: {device.type} without native bf16")
    if device.type == "cuda":
        return PrecisionChoice("bf16", "auto: the GPU runs bf16 natively")
    key = (str(device), tuple(input_shape), torch.get_num_threads())
    if key not in _CHOSEN:
        _CHOSEN[key] = _timed_choice(device, build, input_shape, max_seconds)
    return _CHOSEN[key]


def synthetic_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, device: torch.device,
                   precision: str) -> None:
    """One training step on input ``x`` with a stand-in loss (the mean square of every
    output): forward under ``precision``'s autocast, backward, optimiser step. Costs what
    a real step of the network costs, without labels."""
    with autocast(device, precision):
        out = model(x)
        loss = sum(o.float().square().mean() for o in (out if isinstance(out, tuple) else (out,)) if o is not None)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _timed_choice(device: torch.device, build: Callable[[], torch.nn.Module],
                  input_shape: tuple[int, int, int, int], max_seconds: float) -> PrecisionChoice:
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    x = torch.rand(*input_shape, device=device)
    setups = {}
    for precision in ("fp32", "bf16"):
        model = to_device(build(), device).train()
        setups[precision] = (model, torch.optim.Adam(model.parameters(), lr=1e-4, amsgrad=True))
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    t_start = time.perf_counter()
    for k in range(6):  # step 0 of each is a warm-up; then interleaved, so load hits both alike
        for precision, (model, opt) in setups.items():
            t = time.perf_counter()
            synthetic_step(model, opt, x, device, precision)
            if k:
                times[precision].append(time.perf_counter() - t)
        if k >= 2 and time.perf_counter() - t_start > max_seconds:
            break
    torch.random.set_rng_state(state)
    step_ms = {p: round(float(np.median(v)) * 1000, 1) for p, v in times.items()}
    precision = "bf16" if step_ms["bf16"] < 0.95 * step_ms["fp32"] else "fp32"
    reason = (f"auto: timed a training step here, fp32 {step_ms['fp32']:.0f} ms, bf16 {step_ms['bf16']:.0f} ms "
              f"(batch {input_shape[0]}, {torch.get_num_threads()} threads): {precision}")
    return PrecisionChoice(precision, reason, step_ms)
