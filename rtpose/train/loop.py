"""The fit loop shared by both networks.

Adam with AMSGrad, reduce-on-plateau, early stopping on the validation loss, the best
checkpoint kept, a resumable ``last.pt``, a time budget (wall clock, or CPU time),
``training_log.csv`` and a loss-curve PNG, and a progress bar with the running losses.
"""

from __future__ import annotations

import contextlib
import csv
import math
import time
from pathlib import Path
from typing import Callable

import attrs
import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rtpose.data.samples import Batch
from rtpose.train.config import OptimConfig

console = Console(stderr=True, highlight=False, soft_wrap=True)  # log lines are not cut at 80 columns


def say(name: str, text: str) -> None:
    """One plain log line, prefixed with the network's name (no rich markup parsing)."""
    console.print(escape(f"[{name}] {text}"))


def autocast(device: torch.device, precision: str):
    """bf16 autocast where asked (on some CPUs with AVX-512 BF16 faster than fp32, on
    others slower: ``rtpose.train.precision`` times both); weights and optimiser state
    stay fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move ``model`` to ``device``; on a CPU also to channels-last weights, which oneDNN's
    convolutions run faster in fp32 as in bf16 (a flies13 centered-instance training step,
    batch 16, 2 threads: 263 vs 337 CPU-ms on an Intel Xeon with AVX-512; bench/train_step.py).
    The activations follow the weights' layout; checkpoints load either way."""
    model.to(device)
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    return model


def budget_clock(kind: str) -> Callable[[], float]:
    """Seconds for the time budget: ``wall`` (time.monotonic), or ``cpu``: this process's
    CPU time over torch's thread count, which on an idle machine runs as fast as the
    wall clock, and on a shared one gives the same compute (so the same model) however
    long it takes."""
    if kind == "wall":
        return time.monotonic
    threads = max(torch.get_num_threads(), 1)
    return lambda: time.process_time() / threads


# loss_fn(model, batch, device) -> (total loss tensor, {part name: float})
LossFn = Callable[[torch.nn.Module, Batch, torch.device], tuple[torch.Tensor, dict[str, float]]]
# metrics_fn(model, val_batches, device) -> {metric name: float}
MetricsFn = Callable[[torch.nn.Module, list[Batch], torch.device], dict[str, float]]


@attrs.define
class FitResult:
    epochs: int
    best_epoch: int
    best_val_loss: float
    best_metrics: dict[str, float]
    stopped: str  # why training ended
    wall_s: float  # wall clock, every session of the run (a resumed one: before it too)
    elapsed_s: float = 0.0  # on the budget clock, every session of the run
    wall_before_s: float = 0.0  # wall clock of the sessions before this one (0: not resumed)


def _save(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint


def plot_losses(log_path: Path, png_path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(log_path.open()))
    if not rows:
        return
    epoch = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(epoch, [float(r["train_loss"]) for r in rows], label="train")
    val = [float(r["val_loss"]) for r in rows if r["val_loss"] not in ("", "nan")]
    if val:
        ax.plot(epoch[: len(val)], val, label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


def fit(
    name: str,
    model: torch.nn.Module,
    out_dir: Path,
    sample_batch: Callable[[np.random.Generator], Batch],
    n_train: int,
    val_batches: list[Batch],
    loss_fn: LossFn,
    metrics_fn: MetricsFn | None,
    optim: OptimConfig,
    device: torch.device,
    seed: int,
    extra_checkpoint: dict,
    resume: bool = False,
    progress: bool = True,
    precision: str = "fp32",
) -> FitResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "training_log.csv"
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    to_device(model, device)
    opt = torch.optim.Adam(model.parameters(), lr=optim.lr, amsgrad=True)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=optim.plateau_factor, patience=optim.plateau_patience, min_lr=optim.min_lr
    )
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    start_epoch, best_val, best_epoch, since_best, elapsed_before, wall_before = 0, math.inf, -1, 0, 0.0, 0.0
    best_metrics: dict[str, float] = {}
    if resume and last_path.exists():
        state = torch.load(last_path, map_location=device, weights_only=False)
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, best_val, best_epoch = state["epoch"] + 1, state["best_val_loss"], state["best_epoch"]
        since_best, elapsed_before = state["since_best"], state["elapsed_s"]
        # checkpoints before "wall_s" was kept: the budget clock's time where that is the wall clock
        wall_before = state.get("wall_s", elapsed_before if optim.budget_clock == "wall" else 0.0)
        best_metrics = state.get("best_metrics", {})
        rng.bit_generator.state = state["rng"]
        say(name, f"resuming at epoch {start_epoch} (best val loss {best_val:.3g} at {best_epoch})")
    elif log_path.exists():
        log_path.unlink()

    steps = max(math.ceil(n_train / optim.batch_size), optim.min_steps_per_epoch)
    say(name, f"a line per epoch; * marks a new best validation loss, kept as {best_path.name}")
    budget_s = optim.max_minutes * 60 if optim.max_minutes else math.inf
    # Under a time budget the last ``anneal_fraction`` of it lowers the learning rate
    # linearly towards min_lr: a run cut by the clock still ends on fine steps.
    anneal_s = budget_s * optim.anneal_fraction if optim.max_minutes else 0.0
    plateau_lr = opt.param_groups[0]["lr"]

    def set_lr(elapsed: float) -> None:
        scale = 1.0
        if anneal_s > 0 and elapsed > budget_s - anneal_s:
            scale = max((budget_s - elapsed) / anneal_s, 0.0)
        lr_now = optim.min_lr + (plateau_lr - optim.min_lr) * scale
        for group in opt.param_groups:
            group["lr"] = lr_now

    clock = budget_clock(optim.budget_clock)
    t0 = clock() - elapsed_before
    wall0 = time.monotonic()
    stopped = "max_epochs"
    epoch = start_epoch - 1
    elapsed = elapsed_before
    last_epoch = optim.max_epochs
    if resume and start_epoch:  # a network the stopped run had finished is not trained on: its stop stands
        ended = _budget_stop(optim) if elapsed_before > budget_s else \
            _patience_stop(optim) if since_best >= optim.early_stop_patience else None
        if ended:
            stopped, last_epoch = ended, start_epoch
            say(name, f"had finished before the run was stopped ({ended}): kept as it was")
    columns = [TextColumn(f"[bold]{name}[/] epoch {{task.fields[epoch]}}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[losses]}"), TimeElapsedColumn(), TextColumn("{task.fields[left]}")]

    def time_left() -> str:
        if not math.isfinite(budget_s):
            return ""
        left = max(budget_s - (clock() - t0), 0.0)
        return f"{int(left // 60)}:{int(left % 60):02d} left"

    # Bars only on a terminal; logs and CI get one line per epoch.
    with Progress(*columns, console=console, disable=not (progress and console.is_terminal), transient=True) as bar:
        step_s: float | None = None  # observed seconds per training step (epoch_seconds re-planning)
        for epoch in range(start_epoch, last_epoch):
            model.train()
            if optim.epoch_seconds and step_s:  # never fewer than min_steps_per_epoch
                steps = max(int(round(optim.epoch_seconds / step_s)), optim.min_steps_per_epoch)
            t_epoch = time.monotonic()
            if epoch == start_epoch:  # one bar per network, reset every epoch
                task = bar.add_task("", total=steps, epoch=epoch, losses="", left=time_left())
            else:
                bar.reset(task, total=steps, epoch=epoch, losses="", left=time_left())
            sums: dict[str, float] = {}
            n_done = 0
            for step in range(steps):
                set_lr(clock() - t0)
                batch = sample_batch(rng)
                with autocast(device, precision):
                    loss, parts = loss_fn(model, batch, device)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n_done += 1
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                if step % 10 == 0 or step == steps - 1:
                    bar.update(task, completed=step + 1, left=time_left(),
                               losses=" ".join(f"{k} {v / n_done:.3g}" for k, v in sums.items()))
                if clock() - t0 > budget_s:
                    break
            if n_done:
                step_s = (time.monotonic() - t_epoch) / n_done
            train_parts = {f"train_{k}": v / max(n_done, 1) for k, v in sums.items()}
            model.eval()
            val_parts: dict[str, float] = {}
            if val_batches:
                with torch.no_grad():
                    acc: dict[str, float] = {}
                    for vb in val_batches:
                        with autocast(device, precision):
                            _, p = loss_fn(model, vb, device)
                        for k, v in p.items():
                            acc[k] = acc.get(k, 0.0) + v / len(val_batches)
                    val_parts = {f"val_{k}": v for k, v in acc.items()}
                    if metrics_fn is not None:
                        val_parts.update(metrics_fn(model, val_batches, device))
            val_loss = val_parts.get("val_loss", train_parts.get("train_loss", math.nan))
            lr = opt.param_groups[0]["lr"]
            for group in opt.param_groups:  # the plateau schedule sees its own rate, not the annealed one
                group["lr"] = plateau_lr
            sched.step(val_loss)
            plateau_lr = opt.param_groups[0]["lr"]
            improved = val_loss < best_val
            if improved:
                best_val, best_epoch, since_best = val_loss, epoch, 0
                best_metrics = dict(val_parts)
                _save(best_path, {"state_dict": model.state_dict(), "epoch": epoch, **extra_checkpoint})
            else:
                since_best += 1
            elapsed = clock() - t0
            row = {"epoch": epoch, "steps": n_done, "lr": lr, "elapsed_s": round(elapsed, 1), **train_parts,
                   "val_loss": val_parts.get("val_loss", math.nan),
                   **{k: v for k, v in val_parts.items() if k != "val_loss"}}
            new = not log_path.exists()
            with log_path.open("a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow(row)
            _save(last_path, {
                "state_dict": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "epoch": epoch, "best_val_loss": best_val, "best_epoch": best_epoch, "since_best": since_best,
                "elapsed_s": elapsed, "wall_s": wall_before + time.monotonic() - wall0,
                "rng": rng.bit_generator.state, "best_metrics": best_metrics,
                **extra_checkpoint,
            })
            shown = " ".join(f"{k}={v:.4g}" for k, v in val_parts.items())
            say(name, f"epoch {epoch} train_loss={train_parts.get('train_loss', math.nan):.4g} "
                      f"{shown} lr={lr:.2g} {elapsed / 60:.1f}min{' *' if improved else ''}")
            if elapsed > budget_s:
                stopped = _budget_stop(optim)
                break
            if since_best >= optim.early_stop_patience:
                stopped = _patience_stop(optim)
                break
    plot_losses(log_path, out_dir / "loss.png", f"{name} loss")
    wall = wall_before + time.monotonic() - wall0
    say(name, f"stopped: {stopped}; best epoch {best_epoch} (val loss {best_val:.4g}); {wall / 60:.1f} min")
    return FitResult(epoch + 1, best_epoch, best_val, best_metrics, stopped, wall, elapsed, wall_before)


def _budget_stop(optim: OptimConfig) -> str:
    """Why a network stopped on its time budget, as model.json and the report say it."""
    return f"time budget ({optim.max_minutes:.3g} min{'' if optim.budget_clock == 'wall' else ' of CPU'})"


def _patience_stop(optim: OptimConfig) -> str:
    """Why a network stopped early, as model.json and the report say it."""
    return f"early stopping (no improvement in {optim.early_stop_patience} epochs)"
