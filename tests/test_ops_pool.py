"""Pooling, reductions and axis ops (issue 10), beyond the rows of the shared tables
(tests/test_kernels.py, test_kernels_torch.py, test_onnx_export.py, tests/errors/):

- the 1-D pools against PyTorch over a sweep of every small configuration (sizes, strides, padding,
  ceil_mode): the output size or the refusal (E206), the values and the gradients;
- the 2-D pools with rectangular windows and ceil_mode over random configurations, the same way;
- the ONNX forms (ceil_mode=1, grown pads, Pad + AveragePool) and every supported opset;
- dtypes: int64 token ids through transpose / select / slice (IR, runtime, export), refused by the
  reductions;
- end to end: a 1-D CNN (conv1d -> maxpool1d -> globalmaxpool1d -> dense) trained with ``nnc train``
  and a sequence model reading its last step with ``select(0, -1)`` trained through ``nnc.api``,
  both checked, trained on generated data and exported with verification.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest

import nnc
from nnc.cli import main
from nnc.compiler.lower import compile_source
from nnc.errors import NncError
from nnc.onnx import export as E
from nnc.onnx import verify as V
from nnc.runtime.graph import Graph
from nnc.runtime.kernels import KERNELS, Ctx

from test_onnx_export import REFERENCE_BUGS, CASES as EXPORT_CASES, op_types, roundtrip, session

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Thousands of tiny torch calls: one thread (intra-op threads only add contention)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def program_of(body: str, name: str = "m"):
    return compile_source(f"model {name} {{\n{body}\n}}\n", f"{name}.nnspec")


def codes(body: str) -> list[str]:
    with pytest.raises(NncError) as err:
        program_of(body)
    return [d.code for d in err.value.diagnostics]


def _node(body: str):
    (node,) = program_of(body).model.nodes
    return node


def _kernel_vs_torch(node, x: np.ndarray, tfn, label: str):
    """Forward and input gradient of ``node``'s kernel vs ``tfn`` (float64, a random seed R)."""
    y, cache = KERNELS[node.op].forward([x], {}, node.attrs, Ctx())
    tx = torch.tensor(x, requires_grad=True)
    ty = tfn(tx)
    assert tuple(y.shape) == tuple(ty.shape), f"{label}: shape {y.shape} vs torch {tuple(ty.shape)}"
    assert list(y.shape[1:]) == node.shape, f"{label}: the IR's shape"
    R = np.random.default_rng(1).standard_normal(y.shape)
    (dx,), _ = KERNELS[node.op].backward(R, cache)
    (ty * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12, err_msg=f"{label}: forward")
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12, err_msg=f"{label}: backward")


# ----------------------------------------------------------------------------------------------
# 1-D pools: every small configuration, against PyTorch

SWEEP = [(n, k, s, p, ceil) for n in range(1, 9) for k in range(1, 5) for s in range(1, 4)
         for p in range(k // 2 + 1) for ceil in (False, True)]


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool1d_sweep_matches_torch(kind):
    rng = np.random.default_rng(0)
    tfn = F.max_pool1d if kind == "max" else F.avg_pool1d
    refused = accepted = 0
    for n, k, s, p, ceil in SWEEP:
        label = f"{kind}pool1d({k}, stride={s}, padding={p}, ceil_mode={ceil}) on [2, {n}]"
        stage = f"{kind}pool1d({k}, stride={s}, padding={p}, ceil_mode={'true' if ceil else 'false'})"
        x = np.round(rng.standard_normal((2, 2, n)) * 2) if kind == "max" else rng.standard_normal((2, 2, n))
        try:
            tfn(torch.tensor(x), k, s, p, ceil_mode=ceil)
        except RuntimeError:
            assert codes(f"input x: [2, {n}]\n{stage}") == ["E206"], label
            refused += 1
            continue
        node = _node(f"input x: [2, {n}]\n{stage}")
        _kernel_vs_torch(node, x, lambda t: tfn(t, k, s, p, ceil_mode=ceil), label)
        accepted += 1
    assert refused > 20 and accepted > 300          # the sweep covers both outcomes


def test_pool1d_ceil_mode_edge_cases_by_hand():
    # L=5, k=2: the third window holds 5 alone (avg divisor 1, not 2)
    node = _node("input x: [1, 5]\navgpool1d(2, ceil_mode=true)")
    x = np.arange(1.0, 6.0).reshape(1, 1, 5)
    y, _ = KERNELS["avgpool1d"].forward([x], {}, node.attrs, Ctx())
    np.testing.assert_array_equal(y, [[[1.5, 3.5, 5.0]]])
    assert node.attrs["overhang"] == [1]
    # L=4, k=2, s=3, p=1: a third window would start in the right padding: PyTorch drops it
    node = _node("input x: [1, 4]\nmaxpool1d(2, stride=3, padding=1, ceil_mode=true)")
    assert node.shape == [1, 2] and node.attrs["overhang"] == [0]
    # a window larger than the padded input, which PyTorch accepts with ceil_mode
    node = _node("input x: [1, 3]\navgpool1d(4, stride=2, ceil_mode=true)")
    assert node.shape == [1, 1]
    y, _ = KERNELS["avgpool1d"].forward([np.array([[[1.0, 2.0, 3.0]]])], {}, node.attrs, Ctx())
    np.testing.assert_array_equal(y, [[[2.0]]])
    assert codes("input x: [1, 3]\navgpool1d(4, stride=1, ceil_mode=true)") == ["E206"]


# ----------------------------------------------------------------------------------------------
# 2-D pools: rectangular windows, strides, padding and ceil_mode at random, against PyTorch

def _configs_2d(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        h, w = rng.integers(2, 10, size=2)
        kh, kw = rng.integers(1, 5, size=2)
        sh, sw = rng.integers(1, 4, size=2)
        ph, pw = rng.integers(0, kh // 2 + 1), rng.integers(0, kw // 2 + 1)
        ceil = bool(rng.integers(0, 2))
        try:
            F.max_pool2d(torch.zeros(1, 1, h, w), (kh, kw), (sh, sw), (ph, pw), ceil_mode=ceil)
        except RuntimeError:
            continue
        out.append(tuple(int(v) for v in (h, w, kh, kw, sh, sw, ph, pw)) + (ceil,))
    return out


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool2d_random_configurations_match_torch(kind):
    rng = np.random.default_rng(1)
    tfn = F.max_pool2d if kind == "max" else F.avg_pool2d
    overhanging = 0
    for h, w, kh, kw, sh, sw, ph, pw, ceil in _configs_2d(60):
        stage = (f"{kind}pool2d([{kh}, {kw}], stride=[{sh}, {sw}], padding=[{ph}, {pw}], "
                 f"ceil_mode={'true' if ceil else 'false'})")
        node = _node(f"input x: [2, {h}, {w}]\n{stage}")
        overhanging += any(node.attrs["overhang"])
        x = np.round(rng.standard_normal((2, 2, h, w)) * 2) if kind == "max" else rng.standard_normal((2, 2, h, w))
        _kernel_vs_torch(node, x, lambda t: tfn(t, (kh, kw), (sh, sw), (ph, pw), ceil_mode=ceil),
                         f"{stage} on [2, {h}, {w}]")
    assert overhanging >= 5


def test_pool_padding_over_half_the_window_is_e402_for_1d_pools_too():
    assert codes("input x: [2, 10]\nmaxpool1d(3, padding=2)") == ["E402"]
    assert codes("input x: [2, 10]\navgpool1d(2, padding=[1, 1])") == ["E401"]   # one integer for 1-D


def test_pool_attrs_in_the_ir():
    node = _node("input x: [3, 7, 7]\nmaxpool2d(2, ceil_mode=true)")
    assert node.shape == [3, 4, 4]
    assert node.attrs == {"size": [2, 2], "stride": [2, 2], "padding": [0, 0], "ceil_mode": True,
                          "pads": [0, 0, 0, 0], "overhang": [1, 1]}
    node = _node("input x: [3, 7]\navgpool1d(3, stride=2, padding=1)")
    assert node.shape == [3, 4] and node.attrs["pads"] == [1, 1] and node.attrs["overhang"] == [0]
    assert node.params == 0 and node.flops == 0


# ----------------------------------------------------------------------------------------------
# global pools, reductions and axis ops: shapes and normalised attrs

@pytest.mark.parametrize("body, shape, attrs", [
    ("input x: [4, 5, 6]\nglobalmaxpool2d", [4], {}),
    ("input x: [4, 5]\nglobalmaxpool1d", [4], {}),
    ("input x: [4, 5]\nglobalavgpool1d", [4], {}),
    ("input x: [4, 5, 6]\nmean(-1)", [4, 5], {"axis": 2}),
    ("input x: [4, 5, 6]\nmax(1)", [4, 6], {"axis": 1}),
    ("input x: [4, 5]\nsum(-2)", [5], {"axis": 0}),
    ("input x: [4, 5, 6]\ntranspose([-1, 0, 1])", [6, 4, 5], {"perm": [2, 0, 1]}),
    ("input x: [4, 5, 6]\nselect(-2, -1)", [4, 6], {"axis": 1, "index": 4}),
    ("input x: [4, 5, 6]\nslice(2, -4, 100)", [4, 5, 4], {"axis": 2, "start": 2, "end": 6}),
    ("input x: [4, 5, 6]\nslice(0, -100, -1)", [3, 5, 6], {"axis": 0, "start": 0, "end": 3}),
    ("input x: [4, 5, 6]\nslice(axis=1, start=1, end=2)", [4, 1, 6], {"axis": 1, "start": 1, "end": 2}),
])
def test_shapes_and_resolved_attrs(body, shape, attrs):
    node = _node(body)
    assert node.shape == shape
    assert all(node.attrs[k] == v for k, v in attrs.items()), node.attrs
    assert node.params == 0 and node.flops == 0


@pytest.mark.parametrize("body, code", [
    ("input x: [4, 5]\nmean(2)", "E211"),
    ("input x: [4, 5]\nmax(-3)", "E211"),
    ("input x: [4, 5]\nsum(5)", "E211"),
    ("input x: [4, 5]\nselect(2, 0)", "E211"),
    ("input x: [4, 5]\nslice(-3, 0, 1)", "E211"),
    ("input x: [4, 5]\nselect(0, 4)", "E216"),
    ("input x: [4, 5]\nselect(1, -6)", "E216"),
    ("input x: [4, 5]\nslice(0, 3, 3)", "E217"),
    ("input x: [4, 5]\nslice(0, 10, 20)", "E217"),
    ("input x: [4, 5]\nslice(0, -1, -2)", "E217"),
    ("input x: [4, 5]\ntranspose([0])", "E215"),
    ("input x: [4, 5]\ntranspose([0, 0])", "E215"),
    ("input x: [4, 5]\ntranspose([0, 2])", "E215"),
    ("input x: [4, 5]\ntranspose([1, -1])", "E215"),
    ("input x: [4]\nmean(0)", "E218"),
    ("input x: [4]\nselect(0, -1)", "E218"),
    ("input x: [4]\ntranspose(0)", "E401"),
    ("input x: [4, 5, 6]\nmaxpool1d(2)", "E210"),
    ("input x: [4, 5]\nmaxpool2d(2)", "E210"),
    ("input x: [4]\nglobalmaxpool1d", "E210"),
    ("input x: [4, 5]\nglobalmaxpool2d", "E210"),
])
def test_errors(body, code):
    assert codes(body) == [code]


def test_teaching_hints_point_to_the_pool_of_the_other_rank():
    for op, other, shape in (("maxpool1d", "maxpool2d", "[1, 8, 8]"), ("avgpool1d", "avgpool2d", "[1, 8, 8]"),
                             ("maxpool2d", "maxpool1d", "[1, 8]"), ("avgpool2d", "avgpool1d", "[1, 8]"),
                             ("globalmaxpool1d", "globalmaxpool2d", "[1, 8, 8]"),
                             ("globalavgpool1d", "globalavgpool2d", "[1, 8, 8]"),
                             ("globalmaxpool2d", "globalmaxpool1d", "[1, 8]"),
                             ("globalavgpool2d", "globalavgpool1d", "[1, 8]")):
        with pytest.raises(NncError) as err:
            program_of(f"input x: {shape}\n{op}" + ("(2)" if "global" not in op else ""))
        (d,) = err.value.diagnostics
        assert d.code == "E210" and f"`{other}`" in d.hint, (op, d.hint)


def test_max_ties_send_the_gradient_to_the_first_maximum():
    x = np.array([[[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]])          # (N=1, 2, 3)
    for op, a, expected in (
            ("max", {"axis": 1}, [[[0, 1, 0], [1, 0, 0]]]),
            ("max", {"axis": 0}, [[[0, 1, 1], [1, 0, 0]]]),
            ("globalmaxpool1d", {}, [[[0, 1, 0], [1, 0, 0]]])):
        y, cache = KERNELS[op].forward([x], {}, a, Ctx())
        (dx,), _ = KERNELS[op].backward(np.ones_like(y), cache)
        np.testing.assert_array_equal(dx, expected, err_msg=op)
    img = np.ones((1, 1, 2, 2))
    y, cache = KERNELS["globalmaxpool2d"].forward([img], {}, {}, Ctx())
    (dx,), _ = KERNELS["globalmaxpool2d"].backward(np.full_like(y, 5.0), cache)
    np.testing.assert_array_equal(dx, [[[[5.0, 0.0], [0.0, 0.0]]]])


# ----------------------------------------------------------------------------------------------
# dtypes: token ids through transpose, select and slice

def test_token_ids_pass_through_transpose_select_slice():
    program = program_of("input t: int64 [3, 8]\ntranspose([1, 0]) -> slice(0, 2, -1) -> select(1, -1)\n"
                         "embedding(20, 4) -> flatten -> dense(2)")
    dtypes = {n.op: n.dtype for n in program.model.nodes}
    assert dtypes["transpose"] == dtypes["slice"] == dtypes["select"] == "int64"
    assert dtypes["embedding"] == "float32"
    assert V.token_vocab(program.model, "t") == 20
    t = np.random.default_rng(0).integers(0, 20, size=(5, 3, 8))
    g = Graph(program.model)
    w = g.init_weights(0)
    _, (values, _) = g.forward({"t": t}, w, keep=True)
    ids = values["select_1"]
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(ids, t.transpose(0, 2, 1)[:, 2:-1, -1])
    roundtrip(program)


def test_int64_output_of_an_axis_op_exports_as_int64():
    program = program_of("input t: int64 [3, 8]\nh = transpose([1, 0]) -> select(0, 0)\noutput h")
    assert program.model.outputs[0].dtype == "int64"
    exp, _ = roundtrip(program)
    assert exp.proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT64


@pytest.mark.parametrize("op", ["mean(0)", "max(0)", "sum(0)", "globalmaxpool1d", "maxpool1d(2)"])
def test_reductions_and_pools_refuse_token_ids(op):
    assert codes(f"input t: int64 [3, 8]\n{op}") == ["E208"]


# ----------------------------------------------------------------------------------------------
# ONNX: the forms chosen for ceil_mode, and every opset

def _attrs(node) -> dict:
    return {a.name: (list(a.ints) if a.ints else a.i) for a in node.attribute}


@pytest.mark.parametrize("case, expected", [
    ("maxpool2d_ceil", [("MaxPool", {"ceil_mode": 1, "pads": [0, 0, 0, 0]})]),
    ("maxpool1d_ceil_padding", [("MaxPool", {"ceil_mode": 1, "pads": [1, 1]})]),
    # a window larger than the padded input: floor mode with the end pad grown by the overhang
    ("maxpool1d_ceil_window_past_input", [("MaxPool", {"pads": [0, 1]})]),
    # a window PyTorch drops leaves no overhang: the floor-mode form is already exact
    ("maxpool2d_ceil_drops_last", [("MaxPool", {"pads": [1, 1, 1, 1]})]),
    ("avgpool2d_ceil_drops_last", [("AveragePool", {"count_include_pad": 1, "pads": [1, 1, 1, 1]})]),
    ("avgpool1d_ceil_no_padding", [("AveragePool", {"count_include_pad": 0, "pads": [0, 1]})]),
    ("avgpool2d_ceil_overlap", [("Pad", {"mode": None}), ("AveragePool", {"count_include_pad": 0, "pads": [0, 0, 1, 1]})]),
    ("globalmaxpool2d", [("ReduceMax", {})]),
    ("transpose_rank3", [("Transpose", {"perm": [0, 3, 1, 2]})]),
    ("transpose_identity", [("Identity", {})]),
    ("select_last", [("Gather", {"axis": 1})]),
    ("slice", [("Slice", {})]),
    ("slice_whole_axis", [("Identity", {})]),
])
def test_emitted_forms(case, expected):
    exp = E.build(compile_source(f"model m {{\n{EXPORT_CASES[case]}\n}}\n", "m.nnspec"))
    nodes = list(exp.proto.graph.node)
    assert [n.op_type for n in nodes] == [t for t, _ in expected]
    for node, (_, attrs) in zip(nodes, expected):
        got = _attrs(node)
        for k, v in attrs.items():
            if v is None:
                assert k in got
            else:
                assert got.get(k, 0) == v, (case, k, got)
        if node.op_type == "Gather":
            index = next(t for t in exp.proto.graph.initializer if t.name == node.input[1])
            assert list(index.dims) == []          # a scalar index: the axis is dropped


ALL_OPS = """
input s: [3, 9]
input u: [2, 3]
input img: [2, 9, 9]
input t: int64 [2, 6]
a = s -> maxpool1d(4, stride=3, padding=1, ceil_mode=true) -> avgpool1d(2, ceil_mode=true) -> globalmaxpool1d
b = img -> maxpool2d(2, ceil_mode=true)
c = img -> avgpool2d(4, stride=3, padding=1, ceil_mode=true) -> globalmaxpool2d
d = u -> maxpool1d(4, stride=2, ceil_mode=true) -> globalavgpool1d
e = u -> avgpool1d(4, stride=2, ceil_mode=true) -> flatten
f = s -> mean(0)
g = s -> max(-1)
h = s -> sum(1)
i = img -> transpose([1, 2, 0]) -> select(0, -1) -> slice(0, 2, 100)
j = t -> transpose([1, 0]) -> select(1, 1) -> slice(0, 1, 5) -> embedding(7, 3) -> flatten
output a, b, c, d, e, f, g, h, i, j
"""


@pytest.mark.parametrize("opset", list(E.supported_opsets()))
def test_every_supported_opset(opset):
    program = program_of(ALL_OPS)
    exp, worst = roundtrip(program, opset=opset, batches=(1, 3))
    assert worst <= 1e-4
    for node in exp.proto.graph.node:
        if node.op_type.startswith("Reduce"):
            as_input = opset >= (13 if node.op_type == "ReduceSum" else 18)
            assert (len(node.input) == 2) == as_input, (node.op_type, opset)
            assert ("axes" in _attrs(node)) == (not as_input)
    assert {"MaxPool", "AveragePool", "Pad", "ReduceMax", "ReduceMean", "ReduceSum", "Transpose",
            "Gather", "Slice"} <= set(op_types(exp))


def test_onnx_reference_bugs_are_still_bugs():
    """The export cases onnx.reference is excused from (REFERENCE_BUGS in test_onnx_export.py) still
    fail there while onnxruntime agrees with nnc's runtime: when onnx fixes one, drop it."""
    from onnx.reference import ReferenceEvaluator
    for case in REFERENCE_BUGS:
        program = program_of(EXPORT_CASES[case])
        exp, worst = roundtrip(program, reference=False)
        assert worst <= 1e-4
        inputs = V.random_inputs(program.model, 2)
        want = V.reference_outputs(program, exp.weights, inputs)
        name = program.model.outputs[0].name
        try:
            got = np.asarray(ReferenceEvaluator(exp.proto).run([name], inputs)[0])
        except Exception:       # noqa: BLE001 - any failure of the reference counts as the bug
            continue
        assert got.shape != want[name].shape or not np.allclose(got, want[name], atol=1e-4), case


# ----------------------------------------------------------------------------------------------
# end to end: check, train on generated data, export verified

CNN1D = """
model pulse_cnn {
    input signal: [1, 32]
    conv1d(8, 5, padding=same) -> relu
    maxpool1d(2)                      # [8, 16]
    conv1d(8, 3) -> relu              # [8, 14]
    maxpool1d(3, stride=2, ceil_mode=true)   # [8, 7]
    globalmaxpool1d                   # [8]
    dense(2) -> softmax
    assert output == [2]
}

train {
    data      = npz("pulses.npz")
    loss      = cross_entropy
    optimizer = adam(lr=0.01)
    epochs    = 12
    batch_size = 16
    seed      = 0
}
"""


def _pulses(n: int, seed: int):
    """Noise, and half of it with a pulse at a random place: class 1 iff there is a pulse."""
    rng = np.random.default_rng(seed)
    x = 0.3 * rng.standard_normal((n, 1, 32))
    y = rng.integers(0, 2, size=n)
    where = rng.integers(3, 29, size=n)
    t = np.arange(32)
    for i in np.flatnonzero(y):
        x[i, 0] += 2.0 * np.exp(-0.5 * ((t - where[i]) / 1.2) ** 2)
    return x.astype(np.float32), y.astype(np.int64)


def test_end_to_end_cnn1d_with_pools(tmp_path, capsys):
    spec = tmp_path / "pulse_cnn.nnspec"
    spec.write_text(CNN1D)
    x, y = _pulses(240, 0)
    np.savez(tmp_path / "pulses.npz", x=x, y=y)
    assert main(["check", str(spec)]) == 0
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "Traceback" not in text
    rows = (out / "history.csv").read_text().splitlines()
    header, first, last = rows[0].split(","), rows[1].split(","), rows[-1].split(",")
    loss, acc = header.index("loss"), header.index("accuracy")
    assert float(last[loss]) < float(first[loss])
    assert float(last[acc]) >= 0.9, rows
    # the run's model.onnx was verified by the exporter; run it on fresh data too
    model = nnc.load(spec)
    model.load_weights(out / "weights.npz")
    xt, yt = _pulses(64, 1)
    sess = session(onnx.load(str(out / "model.onnx")))
    got = sess.run(None, {"signal": xt})[0]
    np.testing.assert_allclose(got, model.predict(xt), rtol=1e-4, atol=1e-5)
    assert (got.argmax(1) == yt).mean() >= 0.85


SEQUENCE = """
model last_step {
    input x: [12, 2]
    slice(0, 2, 1000)                         # [10, 2]: drop the first two steps
    gru(8, return_sequences=true)             # [10, 8]
    select(0, -1)                             # [8]: the last step
    dense(1)
}

train {
    loss      = mse
    optimizer = adam(lr=0.02)
    epochs    = 15
    batch_size = 32
    seed      = 0
}
"""


def test_end_to_end_sequence_model_with_select_last_step(tmp_path):
    spec = tmp_path / "last_step.nnspec"
    spec.write_text(SEQUENCE)
    assert main(["check", str(spec)]) == 0
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(256, 12, 2)).astype(np.float32)
    y = (0.5 * x[:, 2:, 0].mean(axis=1) + 0.5 * x[:, -1, 1])[:, None].astype(np.float32)
    model = nnc.load(spec)
    history = model.fit(x, y)
    assert len(history) == 15
    assert history[-1]["loss"] < 0.5 * history[0]["loss"], history
    report = model.export(tmp_path / "last_step.onnx")
    assert "verified: checker, shapes, onnxruntime" in report
    sess = session(onnx.load(str(tmp_path / "last_step.onnx")))
    np.testing.assert_allclose(sess.run(None, {"x": x[:16]})[0], model.predict(x[:16]), rtol=1e-4, atol=1e-5)
