"""Where the shared data lives, and the paths rtpose prints, stores and writes to.

Data files are never part of the repository; ``RTPOSE_DATA`` points at them, defaulting
to ``../shared/data`` beside the checkout. :func:`clean_path` is the form a path takes
when rtpose prints or stores it (no ``..``), :func:`portable_data_path` the form a file
that may move to another machine records (``${RTPOSE_DATA}/...``); :func:`claim_output_file`
refuses to replace an existing output file without ``--overwrite``, :func:`check_writable` that
an output can be written at all, and :func:`claim_report_file` both for a report (``--json``,
``--summary``, ``--report``, ``--histogram``).
"""

from __future__ import annotations

import difflib
import os
import shlex
import tempfile
from pathlib import Path
from typing import Sequence

from rtpose.errors import RtposeError

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The data directory: ``$RTPOSE_DATA``, else ``../shared/data`` next to the repo."""
    env = os.environ.get("RTPOSE_DATA")
    if env:  # folded as the shell's cd folds it: $PWD/../shared/data prints as .../shared/data
        return Path(os.path.abspath(os.path.expanduser(env)))
    return (REPO_ROOT / ".." / "shared" / "data").resolve()


def some_names(names: Sequence[str], most: int) -> str:
    """``a, b, c ...``: the first ``most`` of ``names``, and `` ...`` where there are more
    (what a folder holds, in a one-line message)."""
    return ", ".join(names[:most]) + (" ..." if len(names) > most else "")


def shell_path(path: str | Path) -> str:
    """``path`` as a POSIX shell reads it in a suggested command: as it is, or in single
    quotes where it holds spaces or other characters the shell would split or expand
    (:func:`shlex.quote`)."""
    return shlex.quote(str(path))


def near_miss(path: str | Path) -> str:
    """`` (did you mean 'PATH'?)`` when ``path`` does not exist but a path one typo away does.

    The first part of ``path`` that does not exist is matched (``difflib``) against the
    entries of the folder above it (similarity at least 0.8, so ``absent.yaml`` does not
    suggest ``broken.yaml``); the hint is given only if the path with that one part mended
    exists, so ``runs/flies31/export`` -> ``runs/flies13/export`` and ``clip.trainvall.slp``
    -> ``clip.trainval.slp``. Else ``""``.
    """
    path = Path(path)
    parts = path.parts
    for i in range(len(parts)):
        here = Path(*parts[: i + 1])
        if here.exists():
            continue
        parent = Path(*parts[:i]) if i else Path(".")
        try:
            names = [entry.name for entry in parent.iterdir()]
        except OSError:
            return ""
        for name in difflib.get_close_matches(parts[i], names, n=3, cutoff=0.8):
            mended = parent / name
            mended = mended.joinpath(*parts[i + 1:]) if i + 1 < len(parts) else mended
            if mended.exists():
                return f" (did you mean '{mended}'?)"
        return ""
    return ""


def no_such_file(path: str | Path, what: str = "file") -> str:
    """The one-line message for a missing input (``PATH: no such WHAT``), with a hint when a
    path one typo away exists (:func:`near_miss`), or when it looks like a path under
    ``$RTPOSE_DATA`` written while that variable was unset (the shell expands
    ``$RTPOSE_DATA/flies13/clip.mp4`` to ``/flies13/clip.mp4``)."""
    text = str(path)
    if not os.environ.get("RTPOSE_DATA") and text.startswith("/"):
        beside = data_dir() / text.lstrip("/")
        if beside.exists():
            return (f"{text}: no such {what} (is RTPOSE_DATA unset? {beside} exists: "
                    f"export RTPOSE_DATA={data_dir()})")
    in_repo = REPO_ROOT / text
    if not Path(text).is_absolute() and in_repo.exists():  # a shipped file named from another working directory
        return f"{text}: no such {what} here ({Path.cwd()}; did you mean '{in_repo}', in rtpose's repository?)"
    hint = near_miss(path) or (near_miss(in_repo) if not Path(text).is_absolute() else "")
    return f"{text}: no such {what}{hint}"


def clean_path(path: str | Path) -> str:
    """``path`` as rtpose prints and stores it: absolute, with ``.`` and ``..`` folded.

    ``$PWD/../shared/data/../peer/centroid`` becomes ``/work/shared/peer/centroid``.
    Symbolic links are kept (``os.path.abspath`` folds the text, it does not resolve
    links), so a data folder reached through a link keeps the name the user gave it;
    where a ``..`` follows a link, folding the text would name another place than the
    kernel does, and the path is resolved instead (``Path.resolve``). A path that does not
    exist is folded as text.
    """
    given = os.fspath(path)
    folded = os.path.abspath(given)
    if folded != os.path.join(os.getcwd(), given) and os.path.exists(given):
        try:
            same = os.path.samefile(given, folded)
        except OSError:  # the folded text names nothing: a link came before the ..
            same = False
        if not same:
            return str(Path(given).resolve())
    return folded


def claim_output_file(path: Path, overwrite: bool, option: str = "-o") -> None:
    """Refuse to replace an existing output file unless ``--overwrite`` was given; called
    before any work, so a refused run costs nothing and touches nothing.

    Args:
        path: the output file.
        overwrite: ``--overwrite`` was given: an existing file may be replaced.
        option: the option that named the file (``-o``, ``--json``, ``--report`` ...),
            which the message asks the user to give again.

    Raises:
        RtposeError: ``path`` exists and ``overwrite`` is False (one line naming the file,
            the option and ``--overwrite``, as ``rtpose export`` says it for an export directory).
    """
    if overwrite or not (path.exists() or path.is_symlink()):
        return
    raise RtposeError(f"{path} already exists: give another {option}, or --overwrite to replace it")


def _is_input(path: Path, inputs: Sequence[str | Path]) -> Path | None:
    """The input ``path`` would replace: an input file itself, or an existing file inside an
    input folder (an export directory); None if it replaces no input."""
    if not path.exists():
        return None
    for given in inputs:
        item = Path(given)
        if not item.exists():
            continue
        if item.is_dir():
            if path.resolve().is_relative_to(item.resolve()):
                return item
        elif os.path.samefile(path, item):
            return item
    return None


def claim_report_file(path: str | Path, overwrite: bool, option: str, inputs: Sequence[str | Path] = ()) -> Path:
    """Claim a report output (``--json``, ``--summary``, ``--report``, ``--histogram``)
    before any work: an existing file is refused unless ``overwrite``
    (:func:`claim_output_file`), and so is a path that cannot be written.

    The rule for reports: missing parent folders are created when the report is written
    (:func:`make_parent`), so here a path is refused only where no folder can be made for
    it (a file stands where a folder would go) or the nearest existing folder is not
    writable (:func:`check_writable`), or where the path is itself a folder. Nothing is
    created or touched here but that check's own empty file, removed at once.

    ``inputs`` are what the command reads (files, or folders such as an export): a report
    is never written over one of them, nor over a file inside an input folder, even with
    ``overwrite``, as ``predict`` never writes over its input.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        RtposeError: one line naming the file and the option.
    """
    path = Path(path)
    if path.is_dir():
        raise RtposeError(f"{option} {path} is a folder: give a file name")
    replaced = _is_input(path, inputs)
    if replaced is not None:  # even with --overwrite, which is for an earlier output
        what = "is an input of this command" if replaced.resolve() == path.resolve() else \
            f"lies in {replaced}, an input of this command"
        raise RtposeError(f"{option} {path} {what}: give another {option} (--overwrite never replaces an input)")
    claim_output_file(path, overwrite, option)
    check_writable(path, option)
    return path


def check_writable(path: str | Path, option: str = "-o") -> None:
    """Refuse an output (a file or a folder, existing or to be made) where nothing can be
    written, before any work: the nearest existing folder on its way must take a new file.

    That is tried, not read from permission bits (``os.access`` says yes to root
    everywhere, and a pseudo file system such as ``/proc`` passes it and then takes no
    file): an empty file is made there and removed at once (``tempfile.mkstemp``).

    Raises:
        RtposeError: ``OPTION PATH: cannot write (FOLDER ...)``, naming the folder and why.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise RtposeError(f"{option} {path}: cannot write ({folder} is not a folder)")
    try:
        handle, probe = tempfile.mkstemp(prefix=".rtpose-write-check-", dir=folder)
    except OSError as exc:
        raise RtposeError(f"{option} {path}: cannot write (no file can be made in {folder}: "
                          f"{exc.strerror or exc})") from None
    os.close(handle)
    os.unlink(probe)


def make_parent(path: Path) -> Path:
    """Create the missing parent folders of a report about to be written; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def portable_data_path(path: str | Path) -> str:
    """``path`` written as ``${RTPOSE_DATA}/...`` when it lies under the data directory.

    A file that records where its inputs are (a training run's ``config.yaml``) then
    keeps working where the data lives elsewhere, as the configs that ship do. Paths
    elsewhere are returned as given.
    """
    text = str(path)
    if "$" in text:
        return text
    try:
        relative = Path(text).resolve().relative_to(data_dir().resolve())
    except (ValueError, OSError):
        return text
    return f"${{RTPOSE_DATA}}/{relative.as_posix()}"
