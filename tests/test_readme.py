"""Every example in README.md runs as written: protocol YAML through the real loader,
commands through the real argument parser (their input files must exist, their protocol
and config files must load), command synopses against the parser's options, and the
cheap commands (predict and eval on the fly clip, bench scripts' ``--help``) run.

Also the protocol example in ``rtpose/live/protocol.py``'s docstring.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import rtpose.live.protocol as protocol_module
from rtpose.cli import build_parser
from rtpose.cli import main as cli_main
from rtpose.fleet.inputs import expand_inputs, use_fleet
from rtpose.live.protocol import load_protocol
from rtpose.paths import data_dir
from rtpose.train.config import TrainConfig
from rtpose.yamlconf import load_config

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """``(language, body, line)`` of each fenced block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            start, body = i + 1, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append((m.group(1), "\n".join(body), start + 1))
        i += 1
    return blocks


def commands(body: str) -> list[list[str]]:
    """Shell commands of a block: continuation lines joined, comments dropped, $RTPOSE_DATA expanded."""
    joined = re.sub(r"\\\n\s*", " ", body)
    out = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            out.append(shlex.split(line.replace("$RTPOSE_DATA", str(data_dir()))))
    return out


BLOCKS = fenced_blocks(README)
YAML_BLOCKS = [(body, line) for lang, body, line in BLOCKS if lang == "yaml"]
COMMANDS = [(argv, line) for lang, body, line in BLOCKS if lang == "" for argv in commands(body)]
INLINE = [(m.group(1), README[: m.start()].count("\n") + 1) for m in re.finditer(r"`((?:rtpose|\.venv/bin/python) [^`]+)`", README)]


def test_the_readme_has_examples_of_each_kind():
    assert YAML_BLOCKS and len(COMMANDS) >= 8 and len(INLINE) >= 8


@pytest.mark.parametrize("body,line", YAML_BLOCKS, ids=[f"README:{line}" for _, line in YAML_BLOCKS])
def test_readme_protocol_loads(body, line, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    path = tmp_path / "protocol.yaml"
    path.write_text(body + "\n")
    loaded = load_protocol(path)
    assert loaded.protocol.camera.backend and loaded.protocol.model.export_dir


def test_protocol_docstring_example_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    doc = protocol_module.__doc__
    example = doc.split("::\n\n", 1)[1]
    lines = [line[4:] for line in example.splitlines() if line.startswith("    ")]
    path = tmp_path / "protocol.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert load_protocol(path).protocol.name == "male_approach_replay"


def _check_command(argv: list[str]) -> None:
    """Parse an example command; check its inputs exist and its protocol/config files load."""
    if argv[0] == "make":
        targets = re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M)
        assert set(argv[1:]) <= set(targets), argv
        return
    assert argv[0] == "rtpose", argv
    args = build_parser().parse_args(argv[1:])
    if args.command in ("run", "calibrate"):
        load_protocol(REPO / args.protocol, args.overrides, getattr(args, "duration", None))
    if args.command == "train" and Path(args.config).suffix == ".slp":  # labels alone: settings derived
        assert Path(args.config).exists(), args.config
    elif args.command == "train":
        load_config(REPO / args.config, TrainConfig, args.overrides)
    if args.command == "predict" and use_fleet(args.input, args.workers, args.ray, args.chunk_frames):
        assert expand_inputs(args.input), args.input  # files, folders, patterns: each names something
        return
    for name in ("input", "ground_truth"):
        value = getattr(args, name, None)
        for path in value if isinstance(value, list) else [value] if value else []:
            assert Path(path).exists(), (name, path)


@pytest.mark.parametrize("argv,line", COMMANDS, ids=[f"README:{line}:{' '.join(a[:2])}" for a, line in COMMANDS])
def test_readme_command_parses_and_its_files_load(argv, line, monkeypatch):
    monkeypatch.chdir(REPO)
    text = " ".join(argv)
    if argv[0] == "rtpose" and _is_synopsis(text):
        _check_synopsis(*_synopsis_options(text))
        return
    _check_command(argv)


def _synopsis_options(text: str) -> tuple[list[str], list[str]]:
    # alternatives are written `[--a|--b]`, in a Markdown table `[--a\|--b]`
    words = text.replace("\\|", " ").replace("|", " ").replace("[", " ").replace("]", " ").split()
    return words, [w for w in words if w.startswith("-") and w != "-"]


def _is_synopsis(text: str) -> bool:
    """Brackets, or a placeholder (CONFIG.yaml, MODEL_DIR, A-B, key=D) instead of a value."""
    words = text.split()
    return "[" in text or any(re.fullmatch(r"[A-Z][A-Z_-]*(\.\w+)?", w) or re.search(r"=[A-Z]+$", w)
                              for w in words[2:])


def _check_synopsis(words: list[str], options: list[str]) -> None:
    sub = build_parser()._subparsers._group_actions[0].choices[words[1]]
    known = {s for action in sub._actions for s in action.option_strings}
    assert set(options) <= known, (words[1], set(options) - known)


@pytest.mark.parametrize("text,line", INLINE, ids=[f"README:{line}" for _, line in INLINE])
def test_readme_inline_command(text, line, monkeypatch):
    """A synopsis (with [options]) names only options its command has; a full command parses and loads."""
    monkeypatch.chdir(REPO)
    words, options = _synopsis_options(text)
    if words[0] == ".venv/bin/python":  # a bench script: it exists and takes the options shown
        script = REPO / words[1]
        assert script.exists(), script
        help_text = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True,
                                   env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
        assert help_text.returncode == 0, help_text.stderr
        for option in options:
            assert option in help_text.stdout, (script.name, option)
        return
    if _is_synopsis(text):
        _check_synopsis(words, options)
        return
    if len(words) == 2:  # a bare command name
        assert words[1] in build_parser()._subparsers._group_actions[0].choices
        return
    _check_command(shlex.split(text.replace("$RTPOSE_DATA", str(data_dir()))))


def _on_ray(argv: list[str]) -> bool:
    """A predict example that runs on Ray: parsed above; tests/test_fleet.py runs the fleet on short videos."""
    args = build_parser().parse_args(argv[1:])
    return args.command == "predict" and use_fleet(args.input, args.workers, args.ray, args.chunk_frames)


def test_readme_predict_and_eval_commands_run(tmp_path, monkeypatch):
    """The offline workflow as the README writes it (its outputs in a scratch directory)."""
    wanted = {"predict", "eval"}
    runs = [argv for argv, _ in COMMANDS if argv[0] == "rtpose" and argv[1] in wanted and not _on_ray(argv)]
    assert {argv[1] for argv in runs} == wanted
    monkeypatch.chdir(tmp_path)
    for argv in runs:
        argv = [a if not a.startswith("models/") else str(REPO / a) for a in argv]
        assert cli_main(argv[1:]) == 0, argv
    assert (tmp_path / "preds.slp").exists() and (tmp_path / "eval.json").exists()


def test_every_link_inside_the_readme_reaches_a_heading():
    """`[x](#anchor)` links as GitHub renders headings: lower case, punctuation dropped, spaces as hyphens."""
    def slug(heading: str) -> str:
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    headings = {slug(h) for h in re.findall(r"^#+ (.+)$", README, flags=re.M)}
    links = re.findall(r"\]\(#([^)]+)\)", README)
    assert links and sorted(set(links) - headings) == []
