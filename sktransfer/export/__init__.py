"""Exporting fitted models to ONNX: ``to_onnx``.

The backbone through torch's exporter, the scikit-learn head through
skl2onnx's converters, joined into one graph that onnxruntime runs without
torch or sktransfer (needs the ``export`` extra).
"""

from sktransfer.export._api import OnnxExport, to_onnx

__all__ = ["OnnxExport", "to_onnx"]
