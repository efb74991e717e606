"""ONNX Runtime engines: CPU (default), CUDA and TensorRT execution providers.

CPU settings favour batch-1 latency: intra-op threads = physical cores, sequential
execution, full graph optimisation (NCHWc convolution layouts). TensorRT builds an FP16
engine on first load and caches it beside the model, so later loads are fast.

Which graph runs (rtpose.export.spec): the GPU providers run the fp32 ``model.onnx``
unless told ``precision="int8"``. ``ort-cpu`` with ``precision="auto"`` runs the int8
graph only where it passes its self-check on this machine (rtpose.engine.selfcheck) and
is faster here than fp32: both graphs are timed on a reference frame, in alternating
blocks, at the first load on a machine, and the decision is cached per machine, ONNX
Runtime version, thread count and graph contents (rtpose.engine.graph_choice).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from rtpose.engine.base import Engine
from rtpose.errors import RtposeError
from rtpose.export.spec import INPUT_NAME, OUTPUT_NAMES
from rtpose.machine import cpu_name


class _OrtEngine(Engine):
    providers: list = ["CPUExecutionProvider"]

    def __init__(self, export_dir: str | Path, threads: int | None = None, precision: str = "auto"):
        super().__init__(export_dir)
        needed = self.providers[0] if isinstance(self.providers[0], str) else self.providers[0][0]
        if needed not in ort.get_available_providers():
            raise RtposeError(
                f"engine {self.name} needs ONNX Runtime's {needed}, and this onnxruntime has only "
                f"{', '.join(ort.get_available_providers())} (install onnxruntime-gpu{' and TensorRT' if 'Tensorrt' in needed else ''})"
            )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        self.threads = opts.intra_op_num_threads
        self._options = opts
        self.session = self._choose(precision)

    def _open(self, precision: str) -> ort.InferenceSession:
        if precision not in self.spec.graphs:
            refused = self.spec.extra.get("int8_refused") if precision == "int8" else None
            hint = (f"; its int8 graph was refused at export: {refused['reason']}" if refused
                    else "; export with --int8" if precision == "int8" else "")
            raise RtposeError(f"{self.export_dir}: no {precision} graph in this export (it has "
                              f"{', '.join(self.spec.graphs)}){hint}")
        path = self.export_dir / self.spec.graphs[precision]
        try:
            return ort.InferenceSession(str(path), self._options, providers=self._providers())
        except Exception as exc:  # ONNX Runtime's own kinds (InvalidProtobuf, Fail, ...) share no base class
            first = (str(exc).strip().splitlines() or [""])[0]
            raise RtposeError(f"{path}: ONNX Runtime cannot load this graph ({type(exc).__name__}: {first}); a "
                              "damaged or truncated copy? copy the export again, or export it again") from None

    def _choose(self, precision: str) -> ort.InferenceSession:
        """The session of the graph to run; sets ``graph`` and ``graph_reason``."""
        if precision == "auto":
            precision = "fp32" if "fp32" in self.spec.graphs else next(iter(self.spec.graphs))
            self.graph_reason = "the GPU runs the fp32 graph" if precision == "fp32" else "the export's only graph"
        else:
            self.graph_reason = "forced"
        self.graph = precision
        return self._open(precision)

    def _providers(self) -> list:
        return list(self.providers)

    def refusal_fix(self) -> str:
        if self.graph == "int8":
            return "run the fp32 graph (--fp32, or precision: fp32 in the protocol's model section)"
        return super().refusal_fix()

    @property
    def device(self) -> str:
        return f"{cpu_name()} ({self.threads} thread{'' if self.threads == 1 else 's'})"

    def run_raw(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(None, {INPUT_NAME: batch})
        return dict(zip(OUTPUT_NAMES, outputs))


class OrtCpuEngine(_OrtEngine):
    name = "ort-cpu"

    def _choose(self, precision: str) -> ort.InferenceSession:
        from rtpose.engine.graph_choice import choose_cpu_graph

        if precision != "auto" or set(self.spec.graphs) != {"fp32", "int8"}:
            session = super()._choose(precision)
            if precision == "auto":
                self.graph_reason = "the export's only graph"
            return session
        fp32 = self._open("fp32")
        try:
            int8 = self._open("int8")
        except RtposeError as exc:  # a damaged int8 file: the intact fp32 graph runs, and the reason says why
            self.graph, self.graph_reason = "fp32", f"the int8 graph could not be loaded ({exc})"
            return fp32
        choice = choose_cpu_graph(self, {"fp32": fp32, "int8": int8})
        self.graph, self.graph_reason, self.check = choice.graph, choice.reason, choice.check
        return choice.session


class OrtCudaEngine(_OrtEngine):
    name = "ort-cuda"
    reduced_precision = True  # cuDNN may use TF32 for fp32 convolutions
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]

    @property
    def device(self) -> str:
        return "CUDA (ONNX Runtime)"


class OrtTensorRtEngine(_OrtEngine):
    name = "ort-tensorrt"
    reduced_precision = True  # FP16 engine
    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def _providers(self) -> list:
        cache = self.export_dir / "trt_cache"
        cache.mkdir(exist_ok=True)
        trt = ("TensorrtExecutionProvider", {
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
        })
        return [trt, "CUDAExecutionProvider", "CPUExecutionProvider"]

    @property
    def device(self) -> str:
        return "TensorRT FP16 (ONNX Runtime)"
