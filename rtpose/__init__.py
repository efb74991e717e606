"""rtpose: real-time closed-loop multi-animal pose tracking.

The live path (``rtpose.live``, ``rtpose.engine``, ``rtpose.rules``, ``rtpose.hw``)
runs on ONNX Runtime alone; torch is imported only by the trainer, the exporter and
the ``torch-cuda`` engine.
"""

__version__ = "0.1.0"
