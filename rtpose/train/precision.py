"""Training precision: ``fp32``, ``bf16``, or ``auto``, which times both where bf16 exists.

Why time it: a CPU that *has* bf16 (AVX-512 BF16, AMX) is not always faster with it.
Measured on the instance network's training step (batch 16, crop 144, one thread):
an AMD EPYC Zen 4 ran bf16 faster than fp32; an Intel Xeon with AVX-512 BF16 but no AMX
ran it slower on one thread of a loaded machine (407-437 vs 305-325 CPU-ms per step) and
a little faster on two idle threads (194 vs 210 ms). So ``auto`` on a CPU with bf16 times
training steps of each on random data of the network's shape; on a CPU without it, fp32;
on CUDA, bf16 where the GPU supports it. The choice and the timings are printed and kept
in ``model.json``.

How it times, on a machine other work may load: after one warm-up step of each, rounds
of one step of each precision, the order alternating (fp32 bf16, bf16 fp32, ...), so a
load that comes and goes hits both alike. Load only ever slows a step, so each
precision's fastest step (the minimum of repeated timings, as Python's ``timeit``
advises) is its cost; the median of the per-round ratios bf16/fp32 guards against one
lucky step. fp32, the default, is kept unless bf16 wins on both by ``BF16_MARGIN``
(``decide``). The timing stops once more rounds would hardly change the answer (bf16's
fastest step no faster than fp32's after ``MIN_ROUNDS - 1`` rounds, or bf16 ahead by
twice the margin after ``MIN_ROUNDS``; ``settled``), else after ``MAX_ROUNDS`` rounds or
before a round that would end past ``max_seconds``; with fewer than ``MIN_ROUNDS``
rounds it keeps fp32.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import attrs
import numpy as np
import torch

from rtpose.train.loop import autocast, to_device

_CHOSEN: dict[tuple, "PrecisionChoice"] = {}  # (device, shape, threads) -> choice, for this process

BF16_MARGIN = 0.10  # bf16 must be this much faster than fp32 (fastest step and median round) to be chosen
MIN_ROUNDS = 3  # timed rounds (one step of each precision) needed to choose bf16
MAX_ROUNDS = 8
TIMING_SECONDS = 6.0  # no timed round starts that would end past this (after MIN_ROUNDS - 1 rounds)


@attrs.frozen
class PrecisionChoice:
    """The precision to train in and why.

    Attributes:
        precision: ``fp32`` or ``bf16``.
        reason: one line for the log (the timings when measured).
        step_ms: the fastest training step by precision, milliseconds, where timed.
        timings_ms: every timed step by precision, milliseconds, in the order taken
            (the k-th of each in the same round).
    """

    precision: str
    reason: str
    step_ms: dict[str, float] = attrs.field(factory=dict)
    timings_ms: dict[str, list[float]] = attrs.field(factory=dict)


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively (CUDA: compute capability; CPU: oneDNN's check)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_precision(requested: str, device: torch.device, build: Callable[[], torch.nn.Module],
                     input_shape: tuple[int, int, int, int], max_seconds: float = TIMING_SECONDS) -> PrecisionChoice:
    """The precision for training on ``device``.

    Args:
        requested: ``fp32``, ``bf16`` (taken as given) or ``auto``.
        device: the training device.
        build: makes a fresh network of the architecture to time (the instance network).
        input_shape: (batch, channels, height, width) of one training batch.
        max_seconds: the timing (both precisions) starts no round that would end past
            this, once it has ``MIN_ROUNDS - 1`` rounds after the warm-up.

    Returns:
        The choice; with ``auto`` on a CPU with bf16, timed by interleaved steps (forward,
        MSE backward, Adam; see the module docstring and ``decide``), once per device,
        shape and thread count in this process.
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


def decide(times: Mapping[str, Sequence[float]], margin: float = BF16_MARGIN) -> tuple[str, str]:
    """The precision to train in, from interleaved timings of training steps.

    bf16 is chosen only with at least ``MIN_ROUNDS`` rounds and when it wins by ``margin``
    twice over: its fastest step is at most ``1 - margin`` times fp32's fastest (load only
    slows a step, so the minimum of repeated timings is the cost; Python's ``timeit``
    docs), and the median of the per-round ratios bf16/fp32 is at most ``1 - margin`` too
    (one lucky step does not decide). Anything else keeps fp32, the default.

    Args:
        times: seconds (or any one unit) per step, ``{"fp32": [...], "bf16": [...]}``;
            the k-th timing of each was taken in the same round.
        margin: the share by which bf16 must be faster.

    Returns:
        ``("fp32" | "bf16", why)``, ``why`` a short phrase for the log.
    """
    fp32, bf16 = list(times.get("fp32", ())), list(times.get("bf16", ()))
    rounds = min(len(fp32), len(bf16))
    if not rounds:
        return "fp32", "nothing timed"
    best = min(bf16) / min(fp32)
    paired = float(np.median([b / f for f, b in zip(fp32, bf16)]))
    bound = 1 - margin
    why = f"bf16/fp32 fastest {best:.2f}, median round {paired:.2f}"
    if rounds < MIN_ROUNDS:
        after = f"after {rounds} round{'s' if rounds != 1 else ''}"
        return "fp32", (f"{why}; bf16 no faster {after}" if best >= 1 else
                        f"{why} {after} ({MIN_ROUNDS} needed to prefer bf16)")
    return ("bf16" if best <= bound and paired <= bound else "fp32"), f"{why}; bf16 needs <= {bound:.2f} on both"


def settled(times: Mapping[str, Sequence[float]], margin: float = BF16_MARGIN) -> bool:
    """Whether the timing may stop: more rounds would hardly change ``decide``'s answer.

    True once bf16's fastest step is no faster than fp32's after ``MIN_ROUNDS - 1``
    rounds (bf16 would then need a step more than ``margin`` faster than all of its
    steps so far), or once bf16 wins by twice the margin on both measures after
    ``MIN_ROUNDS`` rounds.
    """
    fp32, bf16 = list(times.get("fp32", ())), list(times.get("bf16", ()))
    rounds = min(len(fp32), len(bf16))
    if rounds >= MIN_ROUNDS - 1 and min(bf16) >= min(fp32):
        return True
    return rounds >= MIN_ROUNDS and decide(times, 2 * margin)[0] == "bf16"


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
    for precision, (model, opt) in setups.items():  # warm-up: first kernels, Adam's state
        synthetic_step(model, opt, x, device, precision)
    round_s = 0.0
    for k in range(MAX_ROUNDS):
        elapsed = time.perf_counter() - t_start
        if k >= MIN_ROUNDS - 1 and elapsed + round_s > max_seconds:
            break  # the next round would end past the budget
        t_round = time.perf_counter()
        for precision in (("fp32", "bf16") if k % 2 == 0 else ("bf16", "fp32")):  # ABBA: drift hits both alike
            model, opt = setups[precision]
            t = time.perf_counter()
            synthetic_step(model, opt, x, device, precision)
            times[precision].append(time.perf_counter() - t)
        round_s = time.perf_counter() - t_round
        if settled(times):
            break
    torch.random.set_rng_state(state)
    precision, why = decide(times)
    timings_ms = {p: [round(t * 1000, 1) for t in v] for p, v in times.items()}
    step_ms = {p: min(v) for p, v in timings_ms.items()}
    took = time.perf_counter() - t_start
    reason = (f"auto: timed {len(times['fp32'])} interleaved rounds of a training step here in {took:.1f} s "
              f"(batch {input_shape[0]}, {torch.get_num_threads()} threads), fastest fp32 {step_ms['fp32']:.0f} ms, "
              f"bf16 {step_ms['bf16']:.0f} ms; {why}: {precision}")
    return PrecisionChoice(precision, reason, step_ms, timings_ms)
