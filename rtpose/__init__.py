"""rtpose: real-time closed-loop multi-animal pose tracking.

The live path (``rtpose.live``, ``rtpose.engine``, ``rtpose.rules``, ``rtpose.hw``)
runs on ONNX Runtime alone; torch is imported only by the trainer, the exporter and
the ``torch-cuda`` engine.
"""

import logging

__version__ = "0.1.0"

# A library logs; the application decides where it goes. A live run writes run.log
# (rtpose.live.runlog); nothing reaches the terminal unless a program configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())
