"""Whole-graph gradients: the graph executor's backward against float64 central differences.

The kernels are gradient-checked one at a time in test_kernels.py; these tests check what only the
executor does: the order of the backward sweep, gradients summed where a value is used more than once
(fan-out, residual blocks written with ``repeat``, ``add(h, h)``), concat of branches, several model
inputs, seeds placed on the logits of a fused softmax / sigmoid loss (``loss_value_id``), batchnorm
in training mode (batch statistics), dropout with a fixed mask, and the recurrent / embedding layers.

Every model is compiled from a spec string and run in float64. Weights start from the spec's
initialisers plus small noise (so zero biases are not a special point); inputs are kept away from
kinks. A failure names the case, the weight key and the entry.
"""
from __future__ import annotations

import numpy as np
import pytest

from nnc.compiler.lower import compile_source
from nnc.runtime.graph import Graph
from nnc.runtime.losses import loss_and_grad

EPS = 1e-6
RTOL, ATOL = 2e-5, 1e-8
MAX_ENTRIES = 12          # entries per weight checked by finite differences (all if fewer)


def build(src: str, seed: int = 0) -> tuple[Graph, dict[str, np.ndarray]]:
    program = compile_source(src, "<test>")
    graph = Graph(program.model, "float64")
    rng = np.random.default_rng(seed + 100)
    weights = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in graph.init_weights(seed).items()}
    return graph, weights


def make_inputs(graph: Graph, n: int, seed: int = 1, vocab: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for inp in graph.model.inputs:
        shape = (n, *inp.shape)
        if inp.dtype == "int64":
            ids = rng.integers(0, vocab, size=shape)
            ids.flat[:2] = ids.flat[2]          # a repeated id: embedding rows receive summed grads
            out[inp.name] = ids.astype(np.int64)
        else:
            out[inp.name] = rng.uniform(0.2, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    return out


def check_gradients(case: str, graph: Graph, weights: dict[str, np.ndarray], loss_fn, analytic,
                    *, training: bool = False, keys: list[str] | None = None) -> None:
    """Compare ``analytic`` (key -> dL/dw) with central differences of ``loss_fn(weights)``."""
    rng = np.random.default_rng(7)
    keys = keys if keys is not None else graph.trainable_keys()
    assert set(analytic) == set(graph.trainable_keys()), (
        f"{case}: backward returned gradients for {sorted(analytic)}, "
        f"expected every trainable weight {sorted(graph.trainable_keys())}")
    for key in keys:
        w = weights[key]
        g = analytic[key]
        assert g.shape == w.shape, f"{case}: backward of {key}: shape {g.shape} != weight shape {w.shape}"
        flat = np.arange(w.size)
        idx = flat if w.size <= MAX_ENTRIES else rng.choice(flat, MAX_ENTRIES, replace=False)
        for i in idx:
            pos = tuple(int(j) for j in np.unravel_index(i, w.shape))
            orig = w[pos]
            w[pos] = orig + EPS
            lp = loss_fn(weights)
            w[pos] = orig - EPS
            lm = loss_fn(weights)
            w[pos] = orig
            num = (lp - lm) / (2 * EPS)
            assert abs(g[pos] - num) <= ATOL + RTOL * max(abs(num), abs(g[pos])), (
                f"{case}: backward of {key}{list(pos)}: analytic {g[pos]:.10g} vs numerical {num:.10g}")


def run_mse_case(case: str, src: str, n: int = 5, *, training: bool = False, vocab: int = 0):
    """Unfused loss: mse against random targets, seeded on the model output."""
    graph, weights = build(src)
    x = make_inputs(graph, n, vocab=vocab)
    out = graph.model.outputs[0]
    target = np.random.default_rng(3).standard_normal((n, *out.shape))

    def forward(ws, keep=False):
        # a fresh generator per call: dropout draws the same mask every time
        return graph.forward(x, ws, training=training, rng=np.random.default_rng(11), keep=keep)

    def loss_fn(ws):
        ws = {k: v.copy() for k, v in ws.items()}   # batchnorm updates running stats in place
        return loss_and_grad("mse", {}, forward(ws)[out.name], target)[0]

    ws = {k: v.copy() for k, v in weights.items()}
    outs, tape = forward(ws, keep=True)
    vid, fused = graph.loss_value_id("mse")
    assert not fused and vid == out.source
    _, dz = loss_and_grad("mse", {}, tape[0][vid], target)
    grads = graph.backward(tape, {vid: dz})
    check_gradients(case, graph, weights, loss_fn, grads, training=training)
    return graph, weights, grads


# ----------------------------------------------------------------------------------------------
# dataflow shapes

FAN_OUT_ADD = """
model fan_out {
    input x: [3]
    h = dense(4) -> tanh
    add(h, h) -> dense(2)
}
"""

FAN_OUT_MULTIPLY = """
model fan_out_mul {
    input x: [3]
    h = dense(4) -> tanh
    a = h -> dense(4) -> sigmoid
    multiply(h, a, h) -> dense(2)
}
"""

RESIDUAL_REPEAT = """
model residual {
    input x: [3]
    dense(5) -> tanh
    repeat 2 {
        h = dense(5) -> tanh
        r = h -> dense(5)
        add(h, r) -> tanh
    }
    dense(2)
}
"""

CONCAT_BRANCHES = """
model branches {
    input x: [3]
    a = x -> dense(4) -> tanh
    b = x -> dense(3) -> sigmoid
    c = concat(a, b)
    d = c -> dense(2)
    e = a -> dense(2)
    add(d, e)
}
"""

CONCAT_AXIS = """
model seq_concat {
    input s: [4, 3]
    a = s -> dense(2) -> tanh
    b = s -> dense(5)
    concat(a, b, axis=1) -> flatten -> dense(2)
}
"""

TWO_INPUTS = """
model two_inputs {
    input a: [4]
    input b: [3]
    x = a -> dense(5) -> tanh
    y = b -> dense(5) -> tanh
    joined = concat(x, y)
    prod = multiply(x, y)
    both = concat(joined, prod)
    dense(2)
}
"""


@pytest.mark.parametrize("case,src", [pytest.param(c, s, id=c) for c, s in [
    ("add(h, h)", FAN_OUT_ADD),
    ("multiply(h, a, h)", FAN_OUT_MULTIPLY),
    ("residual repeat 2", RESIDUAL_REPEAT),
    ("concat of two branches", CONCAT_BRANCHES),
    ("concat along axis 1", CONCAT_AXIS),
    ("two inputs", TWO_INPUTS),
]])
def test_whole_graph_gradients(case, src):
    run_mse_case(case, src)


def test_fan_out_gradient_is_the_sum_of_both_uses():
    """add(h, h) == 2 * h: dL/dw of the layer under the fan-out is twice that of a graph without it."""
    g1, w1 = build(FAN_OUT_ADD)
    g2, _ = build("""
model doubled {
    input x: [3]
    h = dense(4) -> tanh
    dense(2)
}
""")
    x = make_inputs(g1, 4)
    y1 = g1.forward(x, w1)["output"]
    w2 = dict(w1)
    w2["dense_2.weight"] = 2 * w1["dense_2.weight"]      # dense(2h) == dense'(h) with weight*2
    y2 = g2.forward(x, w2)["output"]
    np.testing.assert_allclose(y1, y2, rtol=1e-12)
    _, t1 = g1.forward(x, w1, keep=True)
    _, t2 = g2.forward(x, w2, keep=True)
    seed = np.ones_like(y1)
    d1 = g1.backward(t1, {"dense_2": seed})
    d2 = g2.backward(t2, {"dense_2": seed})
    np.testing.assert_allclose(d1["dense_1.weight"], d2["dense_1.weight"], rtol=1e-12,
                               err_msg="backward of dense_1.weight under add(h, h)")


def test_residual_repeat_names_the_layers_after_expansion():
    graph, _, grads = run_mse_case("residual repeat 2 (keys)", RESIDUAL_REPEAT)
    assert sorted(k.split(".")[0] for k in grads if k.endswith(".weight")) == [
        f"dense_{i}" for i in range(1, 7)]


# ----------------------------------------------------------------------------------------------
# layers with training-mode behaviour, recurrent layers, embeddings

BATCHNORM_DENSE = """
model bn_dense {
    input x: [4]
    dense(6) -> batchnorm -> tanh
    dense(2)
}
"""

BATCHNORM_CONV = """
model bn_conv {
    input img: [2, 5, 5]
    conv2d(3, kernel=3, padding=same) -> batchnorm(momentum=0.8) -> tanh
    avgpool2d(2)
    flatten
    dense(2)
}
"""

DROPOUT_LAYERNORM = """
model drop_ln {
    input x: [6]
    dense(8) -> tanh
    dropout(0.4)
    layernorm
    dense(2)
}
"""

CONV1D_POOL = """
model conv1d_pool {
    input s: [2, 9]
    conv1d(3, kernel=3, stride=2, padding=1) -> tanh
    flatten
    dense(3) -> softplus
    dense(2)
}
"""

EMBED_LSTM_GRU = """
model embed_rnn {
    input tokens: int64 [5]
    e = embedding(7, 4)
    l = lstm(6, return_sequences=true)
    g = gru(5)
    dense(2)
}
"""

EMBED_RNN_SEQUENCES = """
model embed_rnn_seq {
    input tokens: int64 [4]
    embedding(6, 3)
    rnn(4, return_sequences=true)
    dense(3) -> tanh
    lstm(3)
    dense(1)
}
"""


@pytest.mark.parametrize("case,src,kw", [pytest.param(c, s, k, id=c) for c, s, k in [
    ("batchnorm (features) in training mode", BATCHNORM_DENSE, dict(training=True)),
    ("batchnorm (channels) in training mode", BATCHNORM_CONV, dict(training=True)),
    ("batchnorm in inference mode", BATCHNORM_DENSE, dict(training=False)),
    ("dropout (fixed mask) + layernorm", DROPOUT_LAYERNORM, dict(training=True)),
    ("conv1d + flatten", CONV1D_POOL, {}),
    ("embedding -> lstm -> gru", EMBED_LSTM_GRU, dict(vocab=7)),
    ("embedding -> rnn -> lstm", EMBED_RNN_SEQUENCES, dict(vocab=6)),
]])
def test_layer_gradients_in_graphs(case, src, kw):
    run_mse_case(case, src, n=6, **kw)


def test_batchnorm_training_updates_running_stats_and_gets_no_gradient():
    graph, weights = build(BATCHNORM_DENSE)
    assert "batchnorm_1.running_mean" not in graph.trainable_keys()
    x = make_inputs(graph, 8)
    ws = {k: v.copy() for k, v in weights.items()}
    before = ws["batchnorm_1.running_mean"].copy()
    _, tape = graph.forward(x, ws, training=True, keep=True)
    assert not np.array_equal(before, ws["batchnorm_1.running_mean"])
    grads = graph.backward(tape, {"dense_2": np.ones((8, 2))})
    assert "batchnorm_1.running_mean" not in grads and "batchnorm_1.running_var" not in grads


# ----------------------------------------------------------------------------------------------
# fused losses: analytic gradients from the logits vs numerical gradients of the unfused loss

SOFTMAX_MODEL = """
model clf {
    input x: [4]
    h = dense(6) -> tanh
    add(h, h) -> dense(3) -> softmax
}
"""

SIGMOID_MODEL = """
model bin {
    input x: [4]
    dense(5) -> tanh
    dense(2) -> sigmoid
}
"""


def _unfused_cross_entropy(p: np.ndarray, y: np.ndarray, smoothing: float = 0.0) -> float:
    """Mean cross-entropy computed from the softmax probabilities (what the output means)."""
    c = p.shape[-1]
    q = np.eye(c)[y] if y.ndim == 1 else y
    q = q * (1 - smoothing) + smoothing / c
    return float(-np.mean(np.sum(q * np.log(p), axis=-1)))


def _unfused_bce(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@pytest.mark.parametrize("targets,params", [
    ("ids", {}),
    ("ids", {"label_smoothing": 0.1}),
    ("probabilities", {}),
])
def test_fused_softmax_cross_entropy_matches_unfused_numerical(targets, params):
    graph, weights = build(SOFTMAX_MODEL)
    n = 7
    x = make_inputs(graph, n)
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, n) if targets == "ids" else rng.dirichlet(np.ones(3), n)
    vid, fused = graph.loss_value_id("cross_entropy")
    assert fused and vid == "dense_2", (vid, fused)
    outs, tape = graph.forward(x, weights, keep=True)
    loss, dz = loss_and_grad("cross_entropy", params, tape[0][vid], y)
    smoothing = params.get("label_smoothing", 0.0)
    assert loss == pytest.approx(_unfused_cross_entropy(outs["output"], y, smoothing), rel=1e-10)
    grads = graph.backward(tape, {vid: dz})

    def loss_fn(ws):
        return _unfused_cross_entropy(graph.forward(x, ws)["output"], y, smoothing)

    check_gradients(f"softmax+cross_entropy ({targets}, {params})", graph, weights, loss_fn, grads)


def test_fused_sigmoid_binary_cross_entropy_matches_unfused_numerical():
    graph, weights = build(SIGMOID_MODEL)
    n = 6
    x = make_inputs(graph, n)
    y = np.random.default_rng(4).integers(0, 2, (n, 2)).astype(np.float64)
    vid, fused = graph.loss_value_id("binary_cross_entropy")
    assert fused and vid == "dense_2", (vid, fused)
    outs, tape = graph.forward(x, weights, keep=True)
    loss, dz = loss_and_grad("binary_cross_entropy", {}, tape[0][vid], y)
    assert loss == pytest.approx(_unfused_bce(outs["output"], y), rel=1e-10)
    grads = graph.backward(tape, {vid: dz})

    def loss_fn(ws):
        return _unfused_bce(graph.forward(x, ws)["output"], y)

    check_gradients("sigmoid+binary_cross_entropy", graph, weights, loss_fn, grads)


def test_no_fusion_when_the_final_activation_does_not_match_the_loss():
    g, _ = build(SIGMOID_MODEL)
    assert g.loss_value_id("cross_entropy") == ("sigmoid_1", False)
    g, _ = build(SOFTMAX_MODEL)
    assert g.loss_value_id("binary_cross_entropy") == ("softmax_1", False)
    assert g.loss_value_id("mse") == ("softmax_1", False)
    g, _ = build("""
model over_time {
    input s: [3, 4]
    dense(5) -> softmax(axis=0)
}
""")
    assert g.loss_value_id("cross_entropy")[1] is False    # softmax over time is not the class axis


def test_seed_on_the_logits_ignores_the_nodes_after_it():
    graph, weights = build(SOFTMAX_MODEL)
    x = make_inputs(graph, 3)
    _, tape = graph.forward(x, weights, keep=True)
    g_logits = graph.backward(tape, {"dense_2": np.ones((3, 3))})
    assert set(g_logits) == set(graph.trainable_keys())


# ----------------------------------------------------------------------------------------------
# fused steps (nnc.runtime.fusion): relu -> maxpool runs as maxpool -> relu; the same values and
# the same gradients, bitwise

COMMUTE_SPECS = {
    "cnn": """model m {
    input x: [2, 8, 8]
    conv2d(4, kernel=3, padding=same) -> relu
    maxpool2d(2)
    conv2d(3, kernel=3) -> relu
    maxpool2d(2, stride=1, padding=1)
    flatten
    dense(2)
}""",
    "first_layer": """model m {
    input x: [2, 8, 8]
    conv2d(3, kernel=3, padding=same) -> relu
    maxpool2d(2)
    flatten
    dense(2)
}""",
    "conv1d": """model m {
    input x: [7, 3]
    relu
    maxpool1d(3, stride=2, ceil_mode=true)
    flatten
    dense(2)
}""",
}


KINDS = {"cnn": {"PoolRelu"}, "conv1d": {"PoolRelu"}, "first_layer": {"PoolRelu"}}


@pytest.mark.parametrize("case", sorted(COMMUTE_SPECS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_then_maxpool_runs_commuted_with_identical_results(case, dtype):
    program = compile_source(COMMUTE_SPECS[case], "<test>")
    fast = Graph(program.model, dtype)
    plain = Graph(program.model, dtype)
    plain.fused = {}                                     # node by node, as written
    pools = [i for i, n in enumerate(fast.nodes) if n.op.startswith("maxpool")]
    assert pools and all(fast.fused.get(i) is not None for i in pools)
    assert {type(fast.fused[i]).__name__ for i in pools} == KINDS[case]
    weights = fast.init_weights(0)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, *program.model.inputs[0].shape)).astype(dtype)
    x[0] = 0                                             # every window a tie of zeros
    x[1] = np.round(x[1])                                # ties among positive values
    x[2] = -np.abs(x[2])                                 # every window at or below zero
    results = []
    for g in (fast, plain):
        outs, tape = g.forward({"x": x}, weights, keep=True)
        out = next(iter(outs.values()))
        grads = g.backward(tape, {g.model.outputs[0].source: np.ones_like(out) + out})
        results.append((out, grads))
    (o1, g1), (o2, g2) = results
    np.testing.assert_array_equal(o1, o2)
    assert g1.keys() == g2.keys()
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k], err_msg=k)


def test_relu_feeding_more_than_the_pool_is_not_commuted():
    program = compile_source("""model m {
    input x: [2, 4, 4]
    r = x -> relu
    p = r -> maxpool2d(2)
    q = r -> avgpool2d(2)
    s = add(p, q)
    flatten
}""", "<test>")
    assert Graph(program.model, "float64").fused == {}
