"""torch-cuda: the exported pipeline run by torch on an NVIDIA GPU in FP16, replayed
from a CUDA graph.

The engine needs only the export directory: it rebuilds the pipeline modules from
``rtpose.json``'s ``architecture`` and loads their weights from the fp32 ``model.onnx``'s
initializers by name (the exporter keeps torch's parameter names; a format-1 export's
int8 graph is dequantised). Static shapes, a
pinned host buffer and one captured graph per batch size make a frame's round trip one
host-to-device copy, one graph launch and one device-to-host copy. Where the driver (or a
sandbox around it) refuses graph capture or pinned memory, the engine runs eagerly or with
pageable buffers instead, and its ``graph_reason`` (printed by bench and the run summary)
says so with the error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtpose.engine.base import Engine
from rtpose.errors import RtposeError
from rtpose.export.spec import MODEL_FILE, OUTPUT_NAMES, ExportSpec


def pipeline_from_export(export_dir: str | Path, spec: ExportSpec | None = None):
    """The torch pipeline of an export directory, fp32 on the CPU, weights from model.onnx."""
    import onnx
    import torch
    from onnx import numpy_helper

    from rtpose.nn.pipeline import pipeline_from_architecture
    from rtpose.nn.unet import fold_batchnorm

    export_dir = Path(export_dir)
    spec = spec or ExportSpec.load(export_dir)
    arch = spec.architecture
    if not arch or "centroid" not in arch or "instance" not in arch:
        raise RtposeError(f"{export_dir}: rtpose.json has no architecture; re-export with this rtpose")
    pipeline = pipeline_from_architecture(
        arch, input_scale=spec.input_scale, crop_size=spec.crop_size, max_instances=spec.max_instances,
        centroid_threshold=spec.centroid_threshold, refinement=spec.refinement,
    )
    pipeline.eval()
    fold_batchnorm(pipeline)  # same module structure as at export time
    graph_file = spec.graphs.get("fp32") or next(iter(spec.graphs.values()), MODEL_FILE)
    graph = onnx.load(str(export_dir / graph_file), load_external_data=True)
    weights = {init.name: numpy_helper.to_array(init) for init in graph.graph.initializer}
    weights.update(_dequantized_weights(graph.graph, weights))
    state = pipeline.state_dict()
    missing = [k for k in state if k not in weights]
    if missing:
        raise RtposeError(f"{export_dir / MODEL_FILE}: weights missing for {len(missing)} parameters "
                          f"(e.g. {missing[0]}); the graph does not match rtpose.json")
    for k, v in state.items():
        if tuple(weights[k].shape) != tuple(v.shape):
            raise RtposeError(f"{export_dir / MODEL_FILE}: {k} has shape {weights[k].shape}, expected {tuple(v.shape)}")
    pipeline.load_state_dict({k: torch.from_numpy(np.array(weights[k])) for k in state})
    return pipeline


def _dequantized_weights(graph, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """fp32 values of an int8 export's quantised parameters (``<name>_quantized``),
    so a GPU can run an export made for CPUs (per-channel int8 loses < 0.5% per weight)."""
    out = {}
    for node in graph.node:
        q_name = node.input[0] if node.op_type == "DequantizeLinear" else ""
        if not q_name.endswith("_quantized") or q_name not in weights:
            continue
        q = weights[q_name].astype(np.float32)
        scale = weights[node.input[1]].astype(np.float32)
        zero = weights[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.zeros_like(scale)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and q.ndim > 1:
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        out[q_name[: -len("_quantized")]] = (q - zero) * scale
    return out


class TorchCudaEngine(Engine):
    name = "torch-cuda"

    def __init__(self, export_dir: str | Path, fp16: bool = True, cuda_graphs: bool = True, device_index: int = 0,
                 precision: str = "auto"):
        super().__init__(export_dir)
        if precision == "int8":
            raise RtposeError("engine torch-cuda runs the fp32 weights in FP16; the int8 graph is for ort-cpu")
        fp16 = fp16 and precision != "fp32"
        self.graph = "fp16" if fp16 else "fp32"
        self.reduced_precision = fp16
        self.graph_reason = "forced" if precision == "fp32" else "torch-cuda runs the fp32 weights in FP16"
        try:
            import torch
        except ImportError:
            raise RtposeError("engine torch-cuda needs torch with CUDA: pip install 'rtpose[gpu]'") from None
        if not torch.cuda.is_available():
            raise RtposeError("engine torch-cuda needs an NVIDIA GPU and a CUDA build of torch; "
                              "none is visible here (use ort-cpu)")
        self.torch = torch
        self.dev = torch.device("cuda", device_index)
        self.pipeline = pipeline_from_export(self.export_dir, self.spec)
        if fp16:
            self.pipeline.centroid.half()
            self.pipeline.instance.half()
            self.pipeline.compute_dtype = torch.float16
        self.pipeline.to(self.dev)
        self.fp16 = fp16
        self.cuda_graphs = cuda_graphs
        self.pin = True
        torch.backends.cudnn.benchmark = True
        self._graphs: dict[int, tuple] = {}

    @property
    def device(self) -> str:
        name = self.torch.cuda.get_device_name(self.dev)
        return f"{name} ({'FP16' if self.fp16 else 'FP32'}{', CUDA graphs' if self.cuda_graphs else ''})"

    def _pinned(self, tensor):
        """``tensor`` in page-locked memory (asynchronous copies), or as it is where pinning fails."""
        if not self.pin:
            return tensor
        try:
            return tensor.pin_memory()
        except RuntimeError as exc:
            self.pin = False
            first = (str(exc).splitlines() or [""])[0]
            self.graph_reason += f"; pinned host memory failed here ({first}), pageable buffers"
            return tensor

    def _capture(self, batch: int):
        """Static buffers and a captured graph for one batch size."""
        torch = self.torch
        h, w = self.spec.frame_height, self.spec.frame_width
        host_in = self._pinned(torch.zeros((batch, 1, h, w), dtype=torch.uint8))
        dev_in = torch.zeros((batch, 1, h, w), dtype=torch.uint8, device=self.dev)
        stream = torch.cuda.Stream(self.dev)
        stream.wait_stream(torch.cuda.current_stream(self.dev))
        with torch.no_grad(), torch.cuda.stream(stream):
            for _ in range(3):  # warm up kernels and cuDNN autotuning off the capture
                self.pipeline(dev_in)
        torch.cuda.current_stream(self.dev).wait_stream(stream)
        graph, dev_out = None, None
        if self.cuda_graphs:
            try:
                graph = torch.cuda.CUDAGraph()
                with torch.no_grad(), torch.cuda.graph(graph):
                    dev_out = self.pipeline(dev_in)
            except RuntimeError as exc:  # a driver or sandbox without graph capture: run eagerly, and say so
                torch.cuda.synchronize(self.dev)
                graph, dev_out, self.cuda_graphs = None, None, False
                first = (str(exc).splitlines() or [""])[0]
                self.graph_reason += f"; CUDA graph capture failed here ({type(exc).__name__}: {first}), run eagerly"
        host_out = None
        if dev_out is not None:
            host_out = [self._pinned(torch.empty(t.shape, dtype=t.dtype)) for t in dev_out]
        self._graphs[batch] = (host_in, dev_in, graph, dev_out, host_out)
        return self._graphs[batch]

    def run_raw(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        b = batch.shape[0]
        host_in, dev_in, graph, dev_out, host_out = self._graphs.get(b) or self._capture(b)
        host_in.numpy()[...] = batch
        dev_in.copy_(host_in, non_blocking=True)
        if graph is not None:
            graph.replay()
            for h, d in zip(host_out, dev_out):
                h.copy_(d, non_blocking=True)
            torch.cuda.current_stream(self.dev).synchronize()
            # Copies: the pinned buffers are this batch size's, and the next replay writes them
            # again; a caller that keeps the outputs (the self-check keeps every frame's) must
            # not see them change. A few kB a frame.
            return {name: h.numpy().copy() for name, h in zip(OUTPUT_NAMES, host_out)}
        with torch.no_grad():
            outs = self.pipeline(dev_in)
        return {name: t.cpu().numpy() for name, t in zip(OUTPUT_NAMES, outs)}
