"""ONNX Runtime engines: CPU (default), CUDA and TensorRT execution providers.

All three run the same ``model.onnx``. CPU settings favour batch-1 latency: intra-op
threads = physical cores, sequential execution, full graph optimisation (NCHWc
convolution layouts). TensorRT builds an FP16 engine on first load and caches it beside
the model, so later loads are fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from rtpose.engine.base import Engine
from rtpose.errors import RtposeError
from rtpose.export.spec import INPUT_NAME, MODEL_FILE, OUTPUT_NAMES
from rtpose.machine import cpu_name


class _OrtEngine(Engine):
    providers: list = ["CPUExecutionProvider"]

    def __init__(self, export_dir: str | Path, threads: int | None = None):
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
        self.session = ort.InferenceSession(str(self.export_dir / MODEL_FILE), opts, providers=self._providers())

    def _providers(self) -> list:
        return list(self.providers)

    @property
    def device(self) -> str:
        return f"{cpu_name()} ({self.threads} threads)"

    def run_raw(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(None, {INPUT_NAME: batch})
        return dict(zip(OUTPUT_NAMES, outputs))


class OrtCpuEngine(_OrtEngine):
    name = "ort-cpu"


class OrtCudaEngine(_OrtEngine):
    name = "ort-cuda"
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]

    @property
    def device(self) -> str:
        return "CUDA (ONNX Runtime)"


class OrtTensorRtEngine(_OrtEngine):
    name = "ort-tensorrt"
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
