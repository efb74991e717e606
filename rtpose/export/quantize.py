"""Static int8 quantisation of the exported graph's convolutions, portable across x86-64 CPUs.

What is quantised: only ``Conv`` (per-channel symmetric int8 weights, uint8 activations,
QDQ format), with the ``Relu`` that follows a convolution folded into the convolution's
output range (ONNX Runtime's quantiser drops the Relu and quantises the output to
[0, max], which clips negatives exactly as the Relu did). Folding it saves a quantise /
dequantise pair and a fp32 Relu per convolution, and spends all 256 output steps on the
values the next layer sees: on an earlier fly model it moved points 0.10 px (median)
from fp32 instead of 0.27 px (frames 1100-1195 and 1270-1299). Concatenation and max
pooling stay fp32: quantising them too moved points 0.66 px median and 100 px at p95
(one requantisation scale for a skip connection and an upsampled path). Resizing, peak
finding and sub-pixel refinement stay fp32, so coordinates keep their precision, and so
do the last convolutions that write the confidence maps, whose peak shapes the integral
refinement reads. Activation ranges are calibrated on
training frames only, by percentile rather than min/max, so that a few outlier
activations do not coarsen every other value's step.

Why 7-bit weights (ONNX Runtime's ``reduce_range``: int8 weights in [-64, 64]): ONNX
Runtime runs a u8 (activation) x s8 (weight) convolution as an integer GEMM whose inner
loop depends on the CPU:

- with AVX-512 VNNI or AVX-VNNI, ``vpdpbusd`` multiplies four u8 x s8 pairs and adds
  them straight into an int32 accumulator: exact for any int8 weights;
- with AVX2 or AVX-512BW but no VNNI, ``vpmaddubsw`` multiplies u8 x s8 pairs and adds
  each two neighbouring products into a *saturating int16*, before ``vpmaddwd`` widens to
  int32. Two products can reach 2 x 255 x 127 = 64770 > 32767, so full-range weights
  clip some sums: on a 2-core AMD EPYC Zen 3 (AVX2, no VNNI) this export's earlier
  full-range graph lost 0.1 OKS mAP (issue 9). With |w| <= 64 the worst pair is
  2 x 255 x 64 = 32640 <= 32767: nothing can saturate, on any of these paths;
- U8U8 graphs and CPUs with neither path (SSE4.1) widen both operands to int16 and use
  ``pmaddwd`` into int32: exact, but on AVX2 no faster than fp32 (issue 9: 13.8 vs 14.1 ms).

So the same int8 graph computes the same integers on every x86-64 CPU ONNX Runtime
runs on; the one bit of weight precision it costs is measured below and in the model
card. What was verified, and how: ONNX Runtime's own quantisation docs
(``onnxruntime.quantization.quantize.quantize_static``'s docstring in the installed
package) recommend ``reduce_range=True`` on x86-64 CPUs without VNNI "to reduce the risk
of integer saturation"; ``quant_utils.ONNX_INT_TYPE_REDUCED_RANGE`` maps int8 to
[-64, 64]; ``quantize_int8`` refuses a graph with any weight outside it; and the
saturation itself is reproduced on a VNNI machine by running ONNX Runtime under
``qemu-x86_64 -cpu Haswell`` (``bench/int8_portability.py``): a full-range graph moves
points there, the 7-bit graph gives the same integers as with VNNI. The instruction
names come from ONNX Runtime's MLAS kernels (its C++ source is not in the Python
package; the Haswell run is the behavioural check).

The exporter then measures how far the int8 graph's points move from the fp32 graph's
on held-out frames and refuses a quantisation that moves them too far; every engine
load checks it again on this machine against the export's references
(rtpose.engine.selfcheck).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np

from rtpose.errors import RtposeError
from rtpose.export.spec import INPUT_NAME

MAX_MEDIAN_SHIFT_PX = 0.5  # int8 may not move the typical point more than this
CALIBRATION_PERCENTILE = 99.999  # activation range: this percentile of |x| over the calibration frames
QUANTIZED_OPS = ["Conv", "Relu"]  # Relu only where it follows a quantised Conv (folded, see above)
MAX_WEIGHT = 64  # |int8 weight| <= 64: 2 * 255 * 64 = 32640 fits vpmaddubsw's int16 (see above)


def quantize_int8(fp32_path: Path, out_path: Path, calibration_frames: list[np.ndarray], weight_bits: int = 7,
                  keep_fp32: tuple[str, ...] = ()) -> None:
    """Write the int8 graph of ``fp32_path`` to ``out_path``.

    Args:
        fp32_path: the exported fp32 graph.
        out_path: where the int8 graph goes.
        calibration_frames: ``(H, W)`` uint8 training frames for the activation ranges.
        weight_bits: 7 (the export's choice, see the module docstring) or 8 (full int8
            range: exact only on CPUs with VNNI; for comparisons in bench/).
        keep_fp32: weight-name prefixes of further convolutions to leave in fp32.

    Raises:
        RtposeError: no calibration frames, or a weight outside the 7-bit range.
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration_frames:
        raise RtposeError("int8 export needs calibration frames (the model's training frames were not found)")

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration_frames)

        def get_next(self):
            frame = next(self._it, None)
            return None if frame is None else {INPUT_NAME: frame[None, None]}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        # ONNX Runtime's calibrator prints its progress on stdout; our caller says what matters
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(prepared), str(out_path), Frames(), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=QUANTIZED_OPS, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Percentile,
                            nodes_to_exclude=confmap_convs(prepared) + convs_named(prepared, keep_fp32),
                            reduce_range=weight_bits == 7, extra_options={"CalibPercentile": CALIBRATION_PERCENTILE})
    largest = largest_weight(out_path)
    if weight_bits == 7 and largest > MAX_WEIGHT:
        raise RtposeError(f"int8 export: a quantised weight is {largest} > {MAX_WEIGHT}; it could saturate on "
                          "CPUs without VNNI (this onnxruntime ignored reduce_range)")


def largest_weight(int8_path: Path) -> int:
    """The largest |value| of the graph's int8 weight initializers (``*_quantized``)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(int8_path), load_external_data=False).graph
    values = [numpy_helper.to_array(i) for i in graph.initializer if i.name.endswith("_quantized")]
    return max((int(np.abs(v.astype(np.int32)).max()) for v in values if v.dtype == np.int8), default=0)


def convs_named(onnx_path: Path, prefixes: tuple[str, ...]) -> list[str]:
    """The convolutions whose weight names start with one of ``prefixes``."""
    import onnx

    if not prefixes:
        return []
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "Conv" and n.input[1].startswith(tuple(prefixes))]


def confmap_convs(onnx_path: Path) -> list[str]:
    """The convolutions that write confidence maps (weights named ``*.confmaps.weight``)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "Conv" and n.input[1].endswith("confmaps.weight")]


def point_shift_px(fp32_path: Path, int8_path: Path, frames: list[np.ndarray]) -> dict[str, float]:
    """How far int8 moves the points of instances both graphs find (px), on ``frames``."""
    import onnxruntime as ort

    a = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    shifts, same_instances = [], 0
    for frame in frames:
        fa = a.run(None, {INPUT_NAME: frame[None, None]})
        fb = b.run(None, {INPUT_NAME: frame[None, None]})
        same_instances += int(fa[4].sum() == fb[4].sum())
        shifts.append(matched_point_shifts(fa[0][0][fa[4][0]], fb[0][0][fb[4][0]]))
    d = np.concatenate(shifts) if shifts else np.zeros(0)
    d = d[np.isfinite(d)]
    return {"median": float(np.median(d)) if d.size else 0.0, "p95": float(np.percentile(d, 95)) if d.size else 0.0,
            "frames": len(frames), "same_instances": same_instances / max(len(frames), 1)}


def matched_point_shifts(points_a: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Distances between corresponding nodes of two sets of instances ``(n, nodes, 2)``,
    instances paired by position (rtpose.engine.selfcheck.match_instances)."""
    from rtpose.engine.selfcheck import match_instances

    if len(points_a) == 0 or len(points_b) == 0:
        return np.zeros(0, np.float32)
    rows, cols, dist = match_instances(points_a, points_b)
    return dist[rows, cols].ravel()
