"""``rtpose train CONFIG.yaml | LABELS.slp [-o MODEL_DIR] [--minutes N] [--resume] [--set key=value]``.

A YAML config trains as written. A SLEAP labels file trains with every setting derived
from the labels and this machine (rtpose.train.auto), printed with its reason, saved as
the model directory's ``config.yaml``. Both end with the same report (rtpose.train.report): the
exported model scored on the validation frames, its latency, warnings and the next step.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from rtpose.errors import Interrupted, RtposeError
from rtpose.train.config import TrainConfig
from rtpose.train.trainer import train
from rtpose.config import apply_overrides, load_tree, validate
from rtpose.train.checks import check_config
from rtpose.paths import check_writable, no_such_file, some_names


def _check_source(source: Path) -> None:
    """Refuse a training source that is missing or a folder, before any flag is looked at.

    Raises:
        RtposeError: no such file (with the path one typo away, if any), or a folder (with
            the labels files and configs it holds).
    """
    if source.is_dir():
        held = sorted(p.name for p in source.iterdir()
                      if p.is_file() and p.name.lower().endswith((".slp", ".yaml", ".yml")))
        inside = f": it holds {some_names(held, 6)}" if held else " (it holds no .slp or .yaml)"
        raise RtposeError(f"{source}: is a folder; rtpose train takes a labels file (.slp) or a config (.yaml){inside}")
    if not source.exists():
        raise RtposeError(no_such_file(source))
    from rtpose.data.video import VIDEO_SUFFIXES

    if source.suffix.lower() in VIDEO_SUFFIXES:
        raise RtposeError(f"{source}: is a video; rtpose train takes a labels file (.slp, labelled frames of it) or "
                          "a config (.yaml)")


def main(args: argparse.Namespace) -> int:
    minutes = getattr(args, "minutes", None)
    _check_source(Path(args.config))  # said first: a mistyped labels path is not a --minutes problem
    if str(args.config).lower().endswith(".slp"):
        return _train_from_labels(args)
    if minutes is not None:
        raise RtposeError("--minutes applies to a labels file (.slp); in a config set budget_minutes")
    cfg = _checked_config(Path(args.config), args.overrides)
    claim_output(Path(args.output or cfg.output), args.resume, args.overwrite, source=Path(args.config))
    t_start = time.monotonic()
    with _say_what_is_kept(Path(args.output or cfg.output)):
        model_dir = train(cfg, output=args.output, resume=args.resume)
    _report(Path(model_dir), config_run=True, t_start=t_start)
    return 0


def _checked_config(path: Path, overrides: list[str] | None) -> TrainConfig:
    """The training config at ``path`` with ``--set`` applied, validated, and checked against
    what it names (labels, nodes, frames: file and line), before the model dir is touched.

    Raises:
        ConfigError: ``FILE:LINE: field: message`` for the first problem.
    """
    tree, lines = load_tree(path, overrides)
    cfg = validate(TrainConfig, tree, path, lines)
    check_config(cfg, path, lines)
    return cfg


def _report(model_dir: Path, config_run: bool, t_start: float) -> None:
    """The end of every training: the exported model scored on the validation frames as
    ``rtpose predict`` + ``rtpose eval`` would, its latency, warnings, the next step
    (``report.json``; rtpose.train.report). ``t_start``: ``time.monotonic()`` when the
    command started (the report says where the time went)."""
    from rtpose.train.auto import cpu_summary
    from rtpose.train.loop import console
    from rtpose.train.report import print_report, safe_report, write_report

    report = safe_report(model_dir)
    total = (time.monotonic() - t_start) / 60
    try:  # what came after training: the validation tables and this report
        spent = json.loads((model_dir / "model.json").read_text())["time"]
        before = sum(spent[k] for k in ("deriving", "setup", "training"))
        report["time"] = {"report_minutes": round(total - before, 3), "total_minutes": round(total, 3)}
    except (OSError, ValueError, KeyError, TypeError):
        report["time"] = {"total_minutes": round(total, 3)}
    write_report(model_dir, report)
    print_report(model_dir, report, cpu_summary(), console, config_run=config_run)


# what a training run writes in its model directory (--overwrite removes these, nothing else)
RUN_FILES = ("centroid", "instance", "model.json", "config.yaml", "report.json", "validation_report.json")


def claim_output(model_dir: Path, resume: bool, overwrite: bool, clear: bool = True,
                 source: Path | None = None) -> None:
    """Make sure a run does not mix its files with an earlier model's.

    A directory that holds a trained model (``model.json`` or a network's checkpoints) is
    refused unless ``--resume`` (continue it) or ``--overwrite`` (its run files are
    removed first, so an interrupted rerun cannot leave half of each model). ``--resume``
    continues only a run that was stopped: a finished one (``model.json``) has spent its
    budget and is refused, before anything in the directory is touched. With
    ``clear=False`` it only refuses: call it again once every other input is checked, so
    that a mistake found later does not cost the old model.

    A directory of other files (or of run files without a model: a user's own
    ``config.yaml``) is refused unless ``--overwrite``, as ``export -o`` refuses one; and
    ``source``, the labels or config trained from, is never replaced (``-o`` its own folder).

    Raises:
        RtposeError: the directory holds a model, or other files, and neither flag was
            given; ``--resume`` was given for a finished run; the run would write over
            ``source``; no file can be written there (:func:`rtpose.paths.check_writable`).
    """
    if resume and overwrite:
        raise RtposeError("--resume continues the model in the model dir and --overwrite replaces it: give one")
    check_writable(model_dir)  # a folder that takes no file would fail the run after its deriving, or its epochs
    if source is not None and source.name in RUN_FILES and (model_dir / source.name).exists() \
            and os.path.samefile(model_dir / source.name, source):
        raise RtposeError(f"-o {model_dir}: the run would write its {source.name} over {source}, the config it "
                          "trains from: give another -o (--overwrite never replaces an input)")
    held = [name for name in ("model.json", "centroid", "instance") if (model_dir / name).exists()]
    if resume and "model.json" in held:  # refused before its config.yaml is rewritten
        raise RtposeError(f"{model_dir} holds a finished run{_finished_run(model_dir / 'model.json')}: "
                          "--resume continues only a run that was stopped; train into another -o with a larger "
                          "budget (--minutes N for LABELS.slp, budget_minutes in a config), or --overwrite to "
                          "start again")
    if resume and not any((model_dir / net / "last.pt").exists() for net in ("centroid", "instance")):
        # a mistyped -o would otherwise start a new run from epoch 0 without a word
        raise RtposeError(f"{model_dir}: nothing to resume (no stopped run's centroid/last.pt or instance/last.pt "
                          "there); check -o, or leave out --resume to start a new run")
    if resume:
        return
    if not held:
        others = sorted(p.name for p in model_dir.iterdir() if not p.name.startswith(".")) \
            if model_dir.is_dir() else []
        if others and not overwrite:
            raise RtposeError(f"-o {model_dir}: a folder holding other files ({some_names(others, 4)}) and no "
                              "trained model; a training run gets a folder of its own: give a new or empty one "
                              "(--overwrite writes into it anyway, replacing only a run's own files)")
        return
    if not overwrite:
        # a finished run (model.json) has spent its budget: --resume would add next to nothing
        resume_hint = "" if "model.json" in held else ", --resume to continue the run that was stopped"
        raise RtposeError(f"{model_dir} already holds a trained model ({', '.join(held)}): give another -o"
                          f"{resume_hint}, or --overwrite to replace it")
    if not clear:
        return
    for name in RUN_FILES:
        path = model_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _finished_run(info_path: Path) -> str:
    """`` (centroid 12 epochs, instance 40 epochs, 6.1 min)`` from a model.json, or "" if unreadable."""
    try:
        info = json.loads(info_path.read_text())
        nets = ", ".join(f"{net} {info[net]['epochs']} epochs" for net in ("centroid", "instance"))
        return f" ({nets}, {float(info['wall_minutes']):.1f} min)"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


@contextlib.contextmanager
def _say_what_is_kept(model_dir: Path):
    """On Ctrl-C, say what a rerun with ``--resume`` continues from (then stop as before)."""
    try:
        yield
    except KeyboardInterrupt:
        kept = sorted(str(p.relative_to(model_dir)) for p in model_dir.glob("*/last.pt")) if model_dir.is_dir() else []
        print(f"stopped: {', '.join(kept)} kept in {model_dir}; the same command with --resume continues from there"
              if kept else f"stopped before the first epoch ended: nothing to resume in {model_dir}", file=sys.stderr)
        raise Interrupted() from None


def _train_from_labels(args: argparse.Namespace) -> int:
    from rtpose.train.auto import DEFAULT_MINUTES, cpu_summary, default_output, derive
    from rtpose.train.loop import console

    t_start = time.monotonic()
    claimed = Path(args.output or default_output(args.config))
    claim_output(claimed, args.resume, args.overwrite, clear=False,  # said before the banner, as every bad input
                 source=Path(args.config))
    minutes = args.minutes if args.minutes is not None else DEFAULT_MINUTES
    if minutes <= 0:  # said before the banner, which would announce a run of 0 min
        raise RtposeError(f"--minutes must be positive, got {minutes:g}")
    if args.resume:
        return _resume_from_labels(args, claimed, t_start)
    apply_overrides({}, args.overrides or [])  # a --set that is not KEY=VALUE: said before the deriving
    console.print(f"deriving a training config from {args.config} for {minutes:g} min on {cpu_summary()}",
                  highlight=False, markup=False)
    cfg, why = derive(args.config, minutes, args.output, args.overrides, t_start=t_start)
    # the old model's files go only now, when the derivation and every --set have passed their checks
    claim_output(claimed if args.output else Path(cfg.output), args.resume, args.overwrite)
    console.print("derived settings (saved as config.yaml in the model directory; edit and rerun with "
                  "`rtpose train CONFIG.yaml`):", highlight=False, markup=False)
    for key, value, reason in why.reasons:
        console.print(f"  {key}: {value}  ({reason})", highlight=False, markup=False)
    for override in args.overrides or []:  # applied last: they win over the derived values above
        console.print(f"  --set {override}  (given: replaces what is derived above)", highlight=False, markup=False)
    with _say_what_is_kept(Path(cfg.output)):
        model_dir = train(cfg, output=args.output, resume=args.resume, asked_minutes=minutes,
                          before_s=time.monotonic() - t_start)
    _report(Path(model_dir), config_run=False, t_start=t_start)
    return 0


def _resume_from_labels(args: argparse.Namespace, model_dir: Path, t_start: float) -> int:
    """``rtpose train LABELS.slp -o RUN --resume``: the stopped run goes on as its
    ``config.yaml`` says (derived when it began, with that run's ``--set``), as
    ``rtpose train RUN/config.yaml -o RUN --resume`` would. Deriving again would not
    continue it: the step time is measured anew, and a left-out ``--minutes`` would give
    the default budget. ``--set`` given now applies over the saved config; ``--minutes``
    is a new run's budget, so it is noted and left.

    Raises:
        RtposeError: RUN has no ``config.yaml``, or was trained from other labels; a
            ``--set`` or saved value that does not validate (``config.yaml:LINE: ...``).
    """
    from rtpose.train.loop import console

    config = model_dir / "config.yaml"
    if not config.is_file():
        raise RtposeError(f"{model_dir}: no config.yaml of the stopped run to resume from; train anew with "
                          "--overwrite")
    cfg = _checked_config(config, args.overrides)
    given = Path(args.config)
    if not any(os.path.samefile(f, given) for f in cfg.data.label_files):  # they exist: checked above
        raise RtposeError(f"{model_dir} was trained from {', '.join(cfg.data.label_files)}, not {given}: "
                          "--resume continues that run (give its labels), or train into another -o")
    budget = f"budget_minutes {cfg.budget_minutes:g}" if cfg.budget_minutes else "the budgets in it"
    console.print(f"resuming {model_dir} as its config.yaml says ({budget}; derived when the run began)",
                  highlight=False, markup=False)
    if args.minutes is not None:
        console.print(f"  --minutes {args.minutes:g}: the budget of a new run; a resumed run keeps its own",
                      highlight=False, markup=False)
    with _say_what_is_kept(model_dir):
        train(cfg, output=model_dir, resume=True)
    _report(model_dir, config_run=False, t_start=t_start)
    return 0
