"""Frame selections: ``"0-999:10, 1000-1149"``, inclusive ranges, ``:N`` keeping every Nth.

Torch- and OpenCV-free, so a training config validates its selections as it loads
(``rtpose.train.config``) and a bad one is reported with its file and line.
"""

from __future__ import annotations

import re

from rtpose.config import ConfigError

_SELECTION_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*(?::\s*(\d+))?\s*$")


def parse_frame_selection(text: str) -> list[tuple[int, int, int]]:
    """``"0-999:10, 1000-1149"`` -> ``[(0, 999, 10), (1000, 1149, 1)]``: (start, last, step), inclusive.

    Raises:
        ConfigError: an item is not ``START[-END][:STEP]``, or selects nothing (``20-10``).
    """
    items = []
    for part in text.split(","):
        m = _SELECTION_ITEM.match(part)
        if not m:
            raise ConfigError(f"frame selection {text!r}: {part.strip()!r} is not START-END[:STEP]")
        start = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else start
        step = int(m.group(3)) if m.group(3) else 1
        if last < start or step < 1:
            raise ConfigError(f"frame selection {text!r}: {part.strip()!r} is empty")
        items.append((start, last, step))
    return items


def selected_indices(text: str | None, indices: set[int]) -> set[int]:
    """The members of ``indices`` (frame indices) that ``text`` selects; all of them for ``None``."""
    if text is None:
        return set(indices)
    return {i for i in indices if any(a <= i <= b and (i - a) % s == 0 for a, b, s in parse_frame_selection(text))}


def beyond_labels(text: str | None, indices: set[int]) -> str | None:
    """A note when a selection reaches outside the labelled frames' span, else None.

    ``"60-99"`` on labels of frames 0-69 gives ``reaches past the last labelled frame
    (69)``: the frames it does select are used, and the user learns that the rest of the
    range holds no labels (a typo in a range is easy to miss otherwise).
    """
    if text is None or not indices:
        return None
    first, last = min(indices), max(indices)
    items = parse_frame_selection(text)
    notes = []
    if any(a < first for a, _, _ in items):
        notes.append(f"starts before the first labelled frame ({first})")
    if any(b > last for _, b, _ in items):
        notes.append(f"reaches past the last labelled frame ({last})")
    return " and ".join(notes) or None
