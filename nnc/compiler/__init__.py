"""The compiler: IR, op catalogue, checks, formatter and ONNX export (no runtime imports)."""
