"""Shared fixtures: the real fly data from $RTPOSE_DATA (default ../shared/data).

A test that needs the data fails loudly when it is missing; it never skips, so a CI
machine without the data shows red, not a quiet green.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from rtpose.paths import data_dir


def pytest_configure(config) -> None:
    # ort-cpu's per-machine graph timing cache (rtpose.engine.graph_choice): a fresh one per
    # test session, so tests neither read nor write the user's ~/.cache/rtpose
    os.environ["RTPOSE_CACHE_DIR"] = tempfile.mkdtemp(prefix="rtpose-cache-")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test data missing: {path} (set RTPOSE_DATA to the shared data directory)")
    return path


@pytest.fixture(scope="session")
def mice_path() -> Path:
    return _need(data_dir() / "mice2" / "labels.trainval.slp")


@pytest.fixture(scope="session")
def two_frames_path() -> Path:
    return _need(data_dir().parent / "cases" / "two_frames.pkg.slp")


@pytest.fixture(scope="session")
def flies_labels_path() -> Path:
    return _need(data_dir() / "flies13" / "clip.trainval.slp")


@pytest.fixture(scope="session")
def flies_video_path() -> Path:
    return _need(data_dir() / "flies13" / "clip.mp4")


@pytest.fixture(scope="session")
def minimal_labels_path() -> Path:
    return _need(data_dir() / "minimal" / "minimal_instance.pkg.slp")


@pytest.fixture(scope="session")
def cases_dir() -> Path:
    """Small real inputs that once broke rtpose (``RTPOSE_DATA/../cases``, see its README)."""
    return _need(data_dir().parent / "cases")


@pytest.fixture(scope="session")
def flies_close_labels_path() -> Path:
    return _need(data_dir() / "flies13" / "clip.close.slp")
