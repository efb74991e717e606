"""Checks of a validated protocol against the machine, before anything opens.

``load_protocol`` checks the file itself (schema, names, channels). What it cannot know
from the text -- whether the replay source is a video that decodes, whether the
publisher's address is free -- is checked here, so ``rtpose run`` and ``rtpose
calibrate`` report such a mistake as one line with exit status 2 before their banner,
rather than as a run that failed (exit 1) after it. The daemon still handles the same
failures safely if they happen later (a port taken between the check and the run).
"""

from __future__ import annotations

from pathlib import Path

from rtpose.errors import RtposeError
from rtpose.live.protocol import LoadedProtocol


def preflight(loaded: LoadedProtocol) -> list[str]:
    """Check the replay source (readable, frames the model takes), the recorder folder (one
    that can be written; a fixed one: not a file, no recording in it yet) and the
    publisher address of ``loaded``; opens nothing that stays open.

    Returns:
        Notes for the user that stop nothing (a replay shorter than the run's duration).

    Raises:
        RtposeError: one line naming the protocol file, the field and the value.
    """
    protocol = loaded.protocol
    camera = protocol.camera
    notes: list[str] = []
    if camera.backend == "replay":
        from rtpose.engine.base import check_frame_size
        from rtpose.hw.replay import check_source

        try:
            height, width, n_frames, file_fps = check_source(camera.path, camera.frames)
        except RtposeError as exc:
            fields = "camera.path" if camera.frames is None else "camera.path, camera.frames"
            raise RtposeError(f"{loaded.path}: {fields}: {exc}") from None
        # frames the model does not take (the daemon checks a live camera's when it opens)
        check_frame_size(height, width, loaded.spec, f"{loaded.path}: camera.path {camera.path}")
        fps = camera.fps or file_fps
        if not camera.loop and protocol.duration is not None and fps and n_frames / fps < protocol.duration:
            notes.append(f"the replay's {n_frames} frames (as its file declares them) last {n_frames / fps:.1f} s at "
                         f"{fps:g} FPS, less than the duration {protocol.duration:g} s: the run ends with the source "
                         "(camera.loop: true replays it from the start)")
    recorder = protocol.recorder
    if recorder.enabled:  # a folder where no file can be made (under a file, /proc, a read-only disk)
        from rtpose.paths import check_writable

        # {time} kept as written: a folder made at the start, named by it (its parent is what can be tried)
        target = Path(recorder.path.format(name=loaded.name, time="{time}")).expanduser()
        try:
            check_writable(target, "recorder.path")
        except RtposeError as exc:
            raise RtposeError(f"{loaded.path}: {exc}") from None
        if "{time}" not in recorder.path:  # a fixed folder; with {time} every run gets a new one
            from rtpose.live.recorder import RECORD_FILE

            if target.exists() and not target.is_dir():
                raise RtposeError(f"{loaded.path}: recorder.path: {target} is a file; recorder.path names the "
                                  "run's folder (e.g. runs/{name}-{time})")
            if (target / RECORD_FILE).exists():
                raise RtposeError(f"{loaded.path}: recorder.path: {target} already holds a recording; choose "
                                  "another folder, or put {time} in recorder.path (a folder per run)")
    if protocol.publisher.enabled:
        from rtpose.live.publisher import check_bindable

        try:
            check_bindable(protocol.publisher.address)
        except RtposeError as exc:
            raise RtposeError(f"{loaded.path}: publisher.address: {exc}") from None
    return notes
