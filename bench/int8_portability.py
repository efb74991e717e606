"""Does ONNX Runtime's int8 convolution give exact integer sums on this CPU?

A one-layer QDQ convolution whose every u8 x s8 product pair is as large as the weight
range allows: activations 255 (scale 1), all weights +127 (full int8) or +64 (7-bit,
what ``rtpose export --int8`` writes), 64 input channels, 1x1 kernel. Exact sums are
64 x 255 x w. A CPU path that adds two u8 x s8 products into a saturating int16
(``vpmaddubsw``, AVX2 / AVX-512BW without VNNI) returns 32 x 32767 for w = 127 instead
of 32 x 64770; with w = 64 every pair (32640) fits and the sum is exact.

    python bench/int8_portability.py                                   # this CPU
    qemu-x86_64 -cpu Haswell $(which python) bench/int8_portability.py # AVX2, no VNNI

Prints, for each weight value, the exact sum, what ONNX Runtime returned and the CPU's
flags (by CPUID: an emulated CPU reports its own). Exits 1 if the 7-bit graph is not
exact. A benchmark, not a test: it proves the reasoning in rtpose/export/quantize.py on
whatever CPU runs it.
"""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from rtpose.machine import cpu_flags, cpu_name

CHANNELS = 64
OUT_SCALE = 16384.0  # output step: u8 outputs reach 255 * 16384 > 64 * 255 * 127 = 2072640


def conv_graph(weight: int) -> bytes:
    """x (float) -> Q/DQ u8 -> Conv with DQ s8 weights all ``weight`` -> Q/DQ u8 -> y."""
    w = np.full((1, CHANNELS, 1, 1), weight, np.int8)
    inits = [
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0, np.uint8), "zp_u8"),
        numpy_helper.from_array(np.array(0, np.int8), "zp_s8"),
        numpy_helper.from_array(np.array(OUT_SCALE, np.float32), "out_scale"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "one", "zp_u8"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "one", "zp_u8"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "one", "zp_s8"], ["w_dq"]),
        helper.make_node("Conv", ["x_dq", "w_dq"], ["y"]),
        helper.make_node("QuantizeLinear", ["y", "out_scale", "zp_u8"], ["y_q"]),
        helper.make_node("DequantizeLinear", ["y_q", "out_scale", "zp_u8"], ["out"]),
    ]
    graph = helper.make_graph(nodes, "worst_case_conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def run(weight: int) -> tuple[float, float]:
    """(exact sum, ONNX Runtime's) for activations 255 and all weights ``weight``."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(conv_graph(weight), opts, providers=["CPUExecutionProvider"])
    x = np.full((1, CHANNELS, 8, 8), 255.0, np.float32)
    got = float(session.run(None, {"x": x})[0].max())
    return float(CHANNELS * 255 * weight), got


def main() -> int:
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog=__doc__.split("\n\n", 1)[1]).parse_args()
    print(f"{cpu_name()}; flags by CPUID: {' '.join(cpu_flags()) or 'none of avx2/avx512/vnni'}; "
          f"onnxruntime {ort.__version__}")
    step = OUT_SCALE
    exact7 = True
    for weight, label in ((127, "8-bit weights (|w| <= 127)"), (64, "7-bit weights (|w| <= 64)")):
        exact, got = run(weight)
        ok = abs(got - exact) <= step / 2 + 1e-3
        print(f"{label}: exact sum {exact:.0f}, ONNX Runtime {got:.0f} -> "
              f"{'exact (to the output step)' if ok else f'WRONG by {got - exact:+.0f} (saturated int16 sums)'}")
        if weight == 64:
            exact7 = ok
    return 0 if exact7 else 1


if __name__ == "__main__":
    sys.exit(main())
