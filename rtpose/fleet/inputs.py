"""Which files a fleet run predicts on, and where each one's predictions go.

``-i`` takes files, folders (the videos directly inside them) and quoted glob patterns
(``'sessions/**/*.mp4'``, recursive), in any mix; the expansion keeps the order given,
sorted by name within a folder or pattern, each file once.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Sequence

from rtpose.errors import RtposeError
from rtpose.data.video import VIDEO_SUFFIXES, videos_in
from rtpose.paths import no_such_file, some_names

MANIFEST_NAME = "manifest.json"
DEFAULT_OUT_DIR = "rtpose-predictions"


def is_pattern(text: str) -> bool:
    """Whether ``text`` is a glob pattern rather than a path."""
    return any(c in text for c in "*?[")


def use_fleet(inputs: Sequence[str], workers: int | None, ray_address: str | None,
              chunk_frames: int | None) -> bool:
    """Whether ``rtpose predict`` runs on Ray.

    It does for several inputs, a folder, a pattern, or a fleet option; one plain file
    without them is the single-process predict.
    """
    if len(inputs) != 1 or workers is not None or ray_address is not None or chunk_frames is not None:
        return True
    item = inputs[0]
    return Path(item).is_dir() or (is_pattern(item) and not Path(item).exists())


def expand_inputs(items: Sequence[str], notes: list[str] | None = None) -> list[Path]:
    """Files named by ``items`` (files, folders, glob patterns), absolute, each once.

    A folder gives its videos and SLEAP packages (``.pkg.slp``); its other ``.slp`` files
    are labels or predictions whose frames live in a video, so they are left out, and a
    line saying so is appended to ``notes`` (when given).

    Raises:
        RtposeError: an item names nothing (no such file, a pattern that matches no file,
            a folder without videos).
    """
    found: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            # videos, and SLEAP packages (frames embedded); a labels .slp beside its video would repeat it
            videos = sorted(videos_in(path) + [p for p in path.iterdir()
                                               if p.is_file() and p.name.lower().endswith(".pkg.slp")])
            labels = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".slp"
                            and not p.name.lower().endswith(".pkg.slp"))
            if not videos:
                kept = f" ({len(labels)} .slp without frames: {some_names(labels, 3)})" if labels else ""
                raise RtposeError(f"{path}: the folder holds no video ({', '.join(sorted(VIDEO_SUFFIXES))}) "
                                  f"or SLEAP package (.pkg.slp){kept}")
            if labels and notes is not None:
                notes.append(f"{path}: left out {len(labels)} .slp without frames (labels or predictions; their "
                             f"video is the input): {some_names(labels, 3)}")
            found.extend(videos)
        elif is_pattern(item):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True) if Path(m).is_file())
            if not matches:
                raise RtposeError(f"{item}: no file matches the pattern")
            found.extend(matches)
        else:
            raise RtposeError(no_such_file(item, "file or folder"))
    unique: dict[Path, None] = {}
    for p in found:
        unique.setdefault(p.resolve(), None)
    return list(unique)


def output_paths(inputs: Sequence[Path], out_dir: Path) -> list[Path]:
    """``OUT_DIR/<name>.predictions.slp`` per input.

    Raises:
        RtposeError: two inputs would write the same file (same name in different folders).
    """
    outputs: dict[Path, Path] = {}
    for path in inputs:
        name = path.name[: -len(path.suffix)] if path.suffix else path.name
        out = out_dir / f"{name}.predictions.slp"
        if out in outputs:
            raise RtposeError(f"{outputs[out]} and {path} would both write {out}: predict them in separate runs "
                              f"or give different -o folders")
        outputs[out] = path
    return list(outputs)
