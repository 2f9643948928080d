"""ONNX export, one package: ``emitters`` (one emitter per op, keyed by the catalogue's op names,
building the ModelProto from the IR), ``verify`` (checker, shape inference, onnxruntime against the
NumPy runtime) and ``export`` (weights, opsets, external data for models over 2 GiB, the atomic
write). ``nnc check`` never imports this package.

    from nnc.onnx import export_onnx
    report = export_onnx(program, "digits_cnn.onnx")            # seeded weights, newest opset
"""
from .export import export_onnx

__all__ = ["export_onnx"]
