"""The export's inference forms that differ from one node per op (docs/export.md, "The model"),
each against the general path or the NumPy runtime:

- a batchnorm folded into the conv2d / conv1d / dense (on (N, F)) it reads: the folded graph
  against the same model exported without folding (onnxruntime, both), and the derived
  initializers against the fold's arithmetic written out here;
- normalize as Sub + Mul by 1 / sqrt(var + eps) computed as the NumPy kernel computes it: bitwise
  equal to the NumPy runtime;
- a residual sum that only layernorms read is a Sum (not an Add, which onnxruntime would fuse into
  its slower SkipLayerNormalization), against the Add form.
Parity with both runtimes at every opset: tests/test_onnx_export.py (CASES, FALLBACKS).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from nnc.compiler.lower import compile_source
from nnc.onnx import emitters as EM
from nnc.onnx import export as E
from nnc.onnx import verify as V

from test_onnx_export import CASES, lively_weights, op_types, program_of, session

ROOT = Path(__file__).resolve().parent.parent
FOLDED = ["conv2d_batchnorm", "conv2d_no_bias_batchnorm_relu", "conv2d_depthwise_batchnorm", "conv1d_batchnorm",
          "dense_batchnorm"]


def outputs(proto, program, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    inputs = V.random_inputs(program.model, batch, seed=seed)
    names = [o.name for o in program.model.outputs]
    return dict(zip(names, session(proto).run(names, inputs)))


def unfolded(program, weights, monkeypatch, opset=None):
    with monkeypatch.context() as m:
        m.setattr(EM, "batchnorm_folds", lambda model, readers=None: {})
        return E.build(program, weights, opset)


@pytest.mark.parametrize("case", FOLDED)
def test_folded_batchnorm_equals_the_unfolded_graph(case, monkeypatch):
    program = program_of(CASES[case])
    w = lively_weights(program)
    folded, general = E.build(program, w), unfolded(program, w, monkeypatch)
    assert "BatchNormalization" not in op_types(folded)
    assert "BatchNormalization" in op_types(general)
    assert len(folded.proto.graph.node) == len(general.proto.graph.node) - 1
    for batch in (1, 7):
        got, want = outputs(folded.proto, program, batch, batch), outputs(general.proto, program, batch, batch)
        for name in want:
            V.compare(name, got[name], want[name], "the folded graph")


def test_folded_initializers_are_the_fold():
    program = program_of(CASES["conv2d_batchnorm"])
    w = lively_weights(program)
    exp = E.build(program, w)
    inits = {t.name: t for t in exp.proto.graph.initializer}
    assert sorted(inits) == ["conv2d_1.bias_bn", "conv2d_1.weight_bn"]
    scale = w["batchnorm_1.weight"].astype(np.float64) / np.sqrt(w["batchnorm_1.running_var"].astype(np.float64) + 1e-5)
    want_w = (w["conv2d_1.weight"] * scale[:, None, None, None]).astype(np.float32)
    want_b = ((w["conv2d_1.bias"] - w["batchnorm_1.running_mean"]) * scale + w["batchnorm_1.bias"]).astype(np.float32)
    np.testing.assert_allclose(onnx.numpy_helper.to_array(inits["conv2d_1.weight_bn"]), want_w, rtol=1e-6)
    np.testing.assert_allclose(onnx.numpy_helper.to_array(inits["conv2d_1.bias_bn"]), want_b, rtol=1e-6, atol=1e-7)
    assert "batchnorm_1 folded in" in inits["conv2d_1.weight_bn"].doc_string
    # the value holds the batchnorm's result: named after the output it feeds, the node after the conv
    (conv,) = exp.proto.graph.node
    assert conv.name == "conv2d_1" and list(conv.output) == ["output"]
    assert exp.values["conv2d_1"] == exp.values["batchnorm_1"] == "output"


def test_folds_in_the_examples_and_the_zoo(monkeypatch):
    program = compile_source((ROOT / "specs" / "resnet_small.nnspec").read_text(), "resnet_small.nnspec")
    w = lively_weights(program)
    folded, general = E.build(program, w), unfolded(program, w, monkeypatch)
    assert op_types(general).count("BatchNormalization") == 13
    assert "BatchNormalization" not in op_types(folded)
    assert len(folded.proto.graph.node) == len(general.proto.graph.node) - 13
    got, want = outputs(folded.proto, program, 3), outputs(general.proto, program, 3)
    for name in want:
        V.compare(name, got[name], want[name], "the folded graph")
    V.verify_export(folded, program)      # and against the NumPy runtime


@pytest.mark.parametrize("case", ["normalize", "normalize_axis0", "normalize_axis_middle"])
def test_normalize_is_bitwise_the_numpy_runtime(case):
    program = program_of(CASES[case])
    w = lively_weights(program)
    name = next(n.id for n in program.model.nodes if n.op == "normalize")
    rng = np.random.default_rng(5)
    w[f"{name}.mean"] = rng.standard_normal(w[f"{name}.mean"].shape).astype(np.float32)
    w[f"{name}.var"] = rng.uniform(0.1, 3.0, w[f"{name}.var"].shape).astype(np.float32)
    exp = E.build(program, w)
    assert op_types(exp) == ["Sub", "Mul"]
    for batch in (1, 7):
        inputs = V.random_inputs(program.model, batch, seed=batch)
        want = V.reference_outputs(program, w, inputs)
        names = [o.name for o in program.model.outputs]
        for n, got in zip(names, session(exp.proto).run(names, inputs)):
            assert np.array_equal(got, want[n])


def test_residual_sum_before_layernorm(monkeypatch):
    program = program_of(CASES["add_layernorm"])
    w = lively_weights(program)
    exp = E.build(program, w)

    def plain_add(e):        # the general form: Add for two inputs
        return e.op("Add", EM._aligned(e))
    plain_add.min_opset = EM.EMITTERS["add"].min_opset
    with monkeypatch.context() as m:
        m.setitem(EM.EMITTERS, "add", plain_add)
        general = E.build(program, w)
    assert op_types(exp) == ["MatMul", "Add", "Sum", "LayerNormalization"]
    assert op_types(general) == ["MatMul", "Add", "Add", "LayerNormalization"]
    for batch in (1, 7):
        got, want = outputs(exp.proto, program, batch, batch), outputs(general.proto, program, batch, batch)
        for name in want:     # onnxruntime's SkipLayerNormalization rounds differently: not bitwise
            V.compare(name, got[name], want[name], "the Sum form")
