"""The compiler: grammar to checked IR: syntax tree, op catalogue, lowering and checks, formatter.

It imports no runtime, data layer or exporter, and `nnc check` loads no NumPy, onnx or pydantic."""
