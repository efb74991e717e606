"""``rtpose.json``: everything a runtime needs besides the graphs.

Written by the exporter, read by every engine. No torch here: the live path imports
this module. ``format_version`` is bumped on any incompatible change; a runtime refuses
a newer one with a clear message instead of misreading it.

An export directory (format 2) holds:

- ``model.onnx``: the fp32 graph, always. It is the reference every other graph is
  checked against, and the torch-cuda engine rebuilds its networks from its weights.
- ``model.int8.onnx``: the int8 graph, when exported with ``--int8``
  (rtpose.export.quantize).
- ``reference.npz``: a few real input frames and the fp32 graph's outputs on them,
  written at export time (rtpose.engine.selfcheck); every engine load reproduces them.
- ``rtpose.json``: this spec; ``graphs`` names the graph files by precision.

Format 1 (before the self-check) had one ``model.onnx``, int8 when ``extra`` said
``quantization``, and no references; it still loads, unchecked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from rtpose.errors import RtposeError
from rtpose import jsonsafe
from rtpose.paths import no_such_file, shell_path

FORMAT_VERSION = 2
SPEC_FILE = "rtpose.json"
MODEL_FILE = "model.onnx"  # the fp32 graph
INT8_MODEL_FILE = "model.int8.onnx"
REFERENCE_FILE = "reference.npz"

# Graph I/O names, fixed so that every runtime binds them the same way.
INPUT_NAME = "frames"  # (B, 1, H, W) uint8
OUTPUT_NAMES = ("points", "point_scores", "instance_scores", "class_probs", "valid")


@attrs.define
class ExportSpec:
    node_names: list[str]
    edges: list[tuple[int, int]]
    class_names: list[str]
    frame_height: int
    frame_width: int
    input_scale: float  # centroid net input = frame * input_scale
    crop_size: int  # centered-instance crop side, full-resolution pixels
    centroid_output_stride: int
    instance_output_stride: int
    anchor_part: str | None  # None: the centre of the visible nodes' bounding box
    centroid_threshold: float  # minimum centroid peak to count an instance
    point_threshold: float  # below this a node is reported missing (NaN)
    max_instances: int
    config_hash: str
    refinement: str = "integral"  # sub-pixel peak refinement inside the graph
    # unit of the inter-animal distance split (rtpose.data.proximity): the median sqrt(box
    # area) of the training labels; None where the model does not record it (imported models)
    animal_size_px: float | None = None
    architecture: dict[str, Any] = attrs.field(factory=dict)  # lets torch-cuda rebuild the nets
    format_version: int = FORMAT_VERSION
    rtpose_version: str = ""
    extra: dict[str, Any] = attrs.field(factory=dict)
    # precision ("fp32", "int8") -> graph file in the export directory
    graphs: dict[str, str] = attrs.field(factory=lambda: {"fp32": MODEL_FILE})
    # Where the weights came from: format (rtpose, sleap-nn, sleap-1.x), version, files' SHA-256.
    source: dict[str, Any] = attrs.field(factory=dict)

    @property
    def n_nodes(self) -> int:
        return len(self.node_names)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def frame_multiple(self) -> int:
        """Pixels the graph pads every frame to a multiple of (bottom and right, zeros).

        ``centroid max stride / input_scale`` (rtpose.nn.pipeline ``frame_multiple``),
        with the max stride ``stem_stride * 2**down_blocks`` of the centroid UNet in
        ``architecture``; 1 for an export that does not record it (format 1).
        """
        unet = self.architecture.get("centroid", {}).get("unet", {})
        if "stem_stride" not in unet or "down_blocks" not in unet or not self.input_scale:
            return 1
        return max(1, int(round(int(unet["stem_stride"]) * 2 ** int(unet["down_blocks"]) / self.input_scale)))

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["edges"] = [list(e) for e in self.edges]
        return d

    def save(self, export_dir: str | Path) -> Path:
        path = Path(export_dir) / SPEC_FILE
        path.write_text(jsonsafe.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, export_dir: str | Path) -> "ExportSpec":
        export_dir = Path(export_dir)
        if not export_dir.exists():
            message = no_such_file(export_dir, "export directory")
            raise RtposeError(message if "did you mean" in message else f"{message} (make one with `rtpose export`)")
        if not export_dir.is_dir():
            inside = (export_dir.parent / SPEC_FILE).exists()
            raise RtposeError(f"{export_dir}: not an export directory (a file"
                              + (f"; the export is its folder: -m {export_dir.parent})" if inside else ")"))
        for name in (SPEC_FILE, MODEL_FILE):
            if not (export_dir / name).exists():
                raise RtposeError(f"{export_dir}: missing {name}{_export_hint(export_dir)}")
        try:
            d = json.loads((export_dir / SPEC_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise RtposeError(f"{export_dir / SPEC_FILE}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        version = d.get("format_version")
        if not isinstance(version, int):
            raise RtposeError(f"{export_dir / SPEC_FILE}: no format_version")
        if version > FORMAT_VERSION:
            raise RtposeError(
                f"{export_dir}: export format {version} is newer than this rtpose reads ({FORMAT_VERSION}); upgrade rtpose"
            )
        known = {f.name for f in attrs.fields(cls)}
        missing = [f.name for f in attrs.fields(cls)
                   if f.default is attrs.NOTHING and f.name not in d]
        if missing:
            raise RtposeError(f"{export_dir / SPEC_FILE}: missing keys {', '.join(missing)}")
        d = {k: v for k, v in d.items() if k in known}
        d["edges"] = [tuple(e) for e in d["edges"]]
        if version < 2:  # one model.onnx, int8 where the exporter quantised it
            d["graphs"] = {"int8" if "quantization" in d.get("extra", {}) else "fp32": MODEL_FILE}
        spec = cls(**d)
        for precision, name in spec.graphs.items():
            if not (export_dir / name).exists():
                raise RtposeError(f"{export_dir}: missing {name}, its {precision} graph (export with `rtpose export`)")
        return spec


def _export_hint(folder: Path) -> str:
    """How to make an export of what ``folder`` holds (one line's parenthesis).

    An rtpose training run: ``rtpose export RUN -o RUN.export``. A sleap-nn or SLEAP
    network, or a folder holding such networks: the two-directory form (Bring your model).
    """
    def trained(d: Path) -> bool:
        return (d / "best.ckpt").exists() or (d / "best_model.h5").exists()

    if (folder / "model.json").exists():
        return f" (it holds a trained model, not its export: rtpose export {shell_path(folder)} -o {shell_path(f'{folder}.export')})"
    if trained(folder):
        return (" (a trained SLEAP network, not an export: rtpose export CENTROID_DIR INSTANCE_DIR -o EXPORT_DIR; "
                "README, Bring your model)")
    nets = sorted(d for d in folder.iterdir() if d.is_dir() and trained(d))
    if len(nets) >= 2:
        return (f" (it holds trained SLEAP networks, not an export: rtpose export {' '.join(map(shell_path, nets[:2]))} "
                "-o EXPORT_DIR; README, Bring your model)")
    return " (export with `rtpose export`)"
