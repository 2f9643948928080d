"""The zoo table: each spec of specs/zoo/ against its hand-written PyTorch model.

    .venv/bin/python benchmarks/zoo_table.py

Prints, per model: nnc's parameters and the reference figure (the torch model's count, which for
the published models equals the figure cited in the spec's comment), FLOPs per example from nnc
and from torch.utils.flop_counter, and for the small models the largest difference between
onnxruntime on nnc's export (with the torch model's weights) and torch itself, on a batch of 8.
"""
from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from zoo_models import ZOO_MODELS, example, lively, torch_flops, torch_weights  # noqa: E402

from nnc.api import export_onnx  # noqa: E402
from nnc.compiler.lower import compile_source  # noqa: E402


def row(name: str) -> tuple:
    path = ROOT / "specs" / "zoo" / f"{name}.nnspec"
    program = compile_source(path.read_text(encoding="utf-8"), str(path))
    build, small = ZOO_MODELS[name]
    model, shape = build()
    params = sum(p.numel() for p in model.parameters())
    flops = torch_flops(build()[0], shape)
    diff = None
    if small:
        import onnxruntime as ort
        torch.manual_seed(0)
        model = lively(model)
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "m.onnx"
            export_onnx(program, out, weights=torch_weights(model, program))
            x = example(shape, 8, np.random.default_rng(0))
            s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            (got,) = s.run(None, {s.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            diff = float(np.abs(got - model(x).numpy()).max())
    return name, program.model.params, params, program.model.flops, flops, diff


def main() -> None:
    warnings.filterwarnings("ignore")  # torch's note on oneDNN TF32 when the counter turns oneDNN off
    print(f"{'model':<20} {'params nnc':>12} {'reference':>12} {'FLOPs nnc':>15} {'FLOPs torch':>15} "
          f"{'export max |diff|':>18}")
    for name in sorted(ZOO_MODELS):
        n, p, pr, f, ft, d = row(name)
        shown = f"{d:.1e}" if d is not None else "-"
        print(f"{n:<20} {p:>12,} {pr:>12,} {f:>15,} {ft:>15,} {shown:>18}")


if __name__ == "__main__":
    main()
