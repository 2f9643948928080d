"""Issue 10, the attention family: multihead_attention (self, causal, cross, dropout), the positional
ops, normalize, relu6 / hardsigmoid / hardswish / clip and broadcasting add / multiply.

The shared tables (tests/test_kernels.py gradients, tests/test_kernels_torch.py parity,
tests/test_onnx_export.py export) hold a row per op and option; this file holds what does not fit
a table row: references written as loops from the formulas, PyTorch at the exact kinks, the
compiler's view (shapes, merges, weights, FLOPs, initialisation), export at every opset with
non-trivial weights, and an end-to-end Transformer encoder layer that checks, trains and exports.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest

import nnc
from nnc.cli import main
from nnc.compiler.lower import compile_source
from nnc.errors import NncError
from nnc.onnx import export as E
from nnc.runtime.graph import Graph
from nnc.runtime.kernels import KERNELS, Ctx

from test_onnx_export import op_types, roundtrip

torch = pytest.importorskip("torch")
F = torch.nn.functional


def program_of(body: str, name: str = "m"):
    return compile_source(f"model {name} {{\n{body}\n}}\n", f"{name}.nnspec")


def compile_error(body: str) -> list[tuple[str, str]]:
    with pytest.raises(NncError) as err:
        program_of(body)
    return [(d.code, d.message) for d in err.value.diagnostics]


# ----------------------------------------------------------------------------------------------
# multihead_attention: a loop over examples, heads and query steps, written from the formulas

def naive_attention(q, kv, w, heads, causal=False, keep=None):
    """q: (N, Tq, E), kv: (N, Tk, E); keep: the scaled dropout mask (N, H, Tq, Tk) or None."""
    n, tq, e = q.shape
    tk = kv.shape[1]
    d = e // heads
    W = w["in_proj_weight"]
    b = w.get("in_proj_bias", np.zeros(3 * e))
    y = np.zeros((n, tq, e))
    for i in range(n):
        Q = q[i] @ W[:e].T + b[:e]
        K = kv[i] @ W[e:2 * e].T + b[e:2 * e]
        V = kv[i] @ W[2 * e:].T + b[2 * e:]
        heads_out = []
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            o = np.zeros((tq, d))
            for t in range(tq):
                scores = np.array([Q[t, cols] @ K[j, cols] / math.sqrt(d) for j in range(tk)])
                allowed = [j for j in range(tk) if not causal or j <= t]
                p = np.zeros(tk)
                m = max(scores[j] for j in allowed)
                for j in allowed:
                    p[j] = math.exp(scores[j] - m)
                p /= p.sum()
                if keep is not None:
                    p = p * keep[i, h, t]
                o[t] = p @ V[:, cols]
            heads_out.append(o)
        y[i] = np.concatenate(heads_out, axis=1) @ w["out_proj.weight"].T + w.get("out_proj.bias", np.zeros(e))
    return y


def attention_weights(e, rng, bias=True):
    w = {"in_proj_weight": rng.standard_normal((3 * e, e)) * 0.5, "out_proj.weight": rng.standard_normal((e, e)) * 0.5}
    if bias:
        w["in_proj_bias"] = rng.standard_normal(3 * e) * 0.5
        w["out_proj.bias"] = rng.standard_normal(e) * 0.5
    return w


def attrs(heads, e, causal=False, dropout=0.0, bias=True):
    return dict(heads=heads, causal=causal, dropout=dropout, bias=bias, head_dim=e // heads)


@pytest.mark.parametrize("n, tq, tk, e, heads, causal, bias", [
    (2, 5, None, 6, 2, False, True),
    (3, 4, None, 8, 4, True, True),
    (2, 3, None, 4, 1, True, False),
    (2, 3, 6, 6, 3, False, True),
    (1, 4, 2, 4, 2, False, False),
])
def test_attention_forward_matches_the_formula_loop(n, tq, tk, e, heads, causal, bias):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((n, tq, e))
    kv = rng.standard_normal((n, tk, e)) if tk else q
    w = attention_weights(e, rng, bias)
    xs = [q, kv] if tk else [q]
    y, _ = KERNELS["multihead_attention"].forward(xs, w, attrs(heads, e, causal, bias=bias), Ctx())
    np.testing.assert_allclose(y, naive_attention(q, kv, w, heads, causal), rtol=1e-12, atol=1e-12)


def test_causal_steps_do_not_see_the_future():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 4))
    w = attention_weights(4, rng)
    a = attrs(2, 4, causal=True)
    y, _ = KERNELS["multihead_attention"].forward([x], w, a, Ctx())
    x2 = x.copy()
    x2[:, 4:] = rng.standard_normal((2, 2, 4))          # change the last two steps only
    y2, _ = KERNELS["multihead_attention"].forward([x2], w, a, Ctx())
    np.testing.assert_allclose(y[:, :4], y2[:, :4], rtol=1e-13, atol=1e-13)
    assert not np.allclose(y[:, 4:], y2[:, 4:])


def test_attention_dropout_mask_comes_from_the_rng_like_dropout():
    rng = np.random.default_rng(2)
    n, t, e, heads, rate = 2, 4, 6, 3, 0.4
    x = rng.standard_normal((n, t, e))
    w = attention_weights(e, rng)
    a = attrs(heads, e, causal=True, dropout=rate)
    k = KERNELS["multihead_attention"]
    y, _ = k.forward([x], w, a, Ctx(training=True, rng=np.random.default_rng(7)))
    keep = (np.random.default_rng(7).random((n, heads, t, t)) >= rate) / (1 - rate)
    np.testing.assert_allclose(y, naive_attention(x, x, w, heads, True, keep), rtol=1e-12, atol=1e-12)
    again, _ = k.forward([x], w, a, Ctx(training=True, rng=np.random.default_rng(7)))
    np.testing.assert_array_equal(y, again)
    # inference (and dropout=0 in training) draws nothing and ignores the rate
    gen = np.random.default_rng(3)
    state = gen.bit_generator.state
    y_eval, _ = k.forward([x], w, a, Ctx(training=False, rng=gen))
    y_zero, _ = k.forward([x], w, dict(a, dropout=0.0), Ctx(training=True, rng=gen))
    assert gen.bit_generator.state == state
    np.testing.assert_allclose(y_eval, naive_attention(x, x, w, heads, True), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(y_eval, y_zero)


def test_attention_with_dropout_matches_torch_autograd_with_the_same_mask():
    """Forward and every gradient against torch's autograd through the same formulas with nnc's
    mask (torch's own dropout draws from torch's generator, so the module cannot share the mask)."""
    rng = np.random.default_rng(4)
    n, tq, tk, e, heads, rate = 2, 3, 5, 4, 2, 0.3
    q, kv = rng.standard_normal((n, tq, e)), rng.standard_normal((n, tk, e))
    w = attention_weights(e, rng)
    a = attrs(heads, e, dropout=rate)
    k = KERNELS["multihead_attention"]
    y, cache = k.forward([q, kv], w, a, Ctx(training=True, rng=np.random.default_rng(11)))
    R = rng.standard_normal(y.shape)
    (dq, dkv), dw = k.backward(R, cache)
    keep = torch.tensor((np.random.default_rng(11).random((n, heads, tq, tk)) >= rate) / (1 - rate))

    tq_, tkv = torch.tensor(q, requires_grad=True), torch.tensor(kv, requires_grad=True)
    tw = {name: torch.tensor(v, requires_grad=True) for name, v in w.items()}
    W, b = tw["in_proj_weight"], tw["in_proj_bias"]
    d = e // heads

    def split(z, t):
        return z.reshape(n, t, heads, d).transpose(1, 2)
    Q = split(F.linear(tq_, W[:e], b[:e]), tq)
    K = split(F.linear(tkv, W[e:2 * e], b[e:2 * e]), tk)
    V = split(F.linear(tkv, W[2 * e:], b[2 * e:]), tk)
    P = torch.softmax(Q @ K.transpose(-1, -2) / math.sqrt(d), dim=-1) * keep
    out = F.linear((P @ V).transpose(1, 2).reshape(n, tq, e), tw["out_proj.weight"], tw["out_proj.bias"])
    (out * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dq, tq_.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dkv, tkv.grad.numpy(), rtol=1e-9, atol=1e-11)
    for name in w:
        np.testing.assert_allclose(dw[name], tw[name].grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=name)


def test_attention_float32_matches_torch_module():
    """The float32 kernel against the module in float32 (a training-size case, both in eval mode)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 12, 16)).astype(np.float32)
    w = {k: v.astype(np.float32) for k, v in attention_weights(16, rng).items()}
    y, _ = KERNELS["multihead_attention"].forward([x], w, attrs(4, 16, causal=True), Ctx())
    assert y.dtype == np.float32
    mod = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    mod.load_state_dict({k: torch.tensor(v) for k, v in w.items()})
    mask = torch.triu(torch.ones(12, 12, dtype=torch.bool), 1)
    with torch.no_grad():
        ref, _ = mod(torch.tensor(x), torch.tensor(x), torch.tensor(x), attn_mask=mask, need_weights=False)
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# multihead_attention in the compiler: both forms, weights, parameters, FLOPs, initialisation

def test_self_and_cross_attention_compile():
    p = program_of("input x: [6, 8]\ninput m: [4, 8]\nh = x -> multihead_attention(2, causal=true)\n"
                   "c = multihead_attention(h, m, heads=4, bias=false)\noutput c")
    a, c = p.model.nodes
    assert (a.op, a.inputs, a.shape, a.attrs["head_dim"]) == ("multihead_attention", ["x"], [6, 8], 4)
    assert (c.inputs, c.shape, c.attrs["head_dim"], c.attrs["causal"]) == ([a.id, "m"], [6, 8], 2, False)
    assert [(w.name, w.shape) for w in a.weights] == [
        ("in_proj_weight", [24, 8]), ("in_proj_bias", [24]), ("out_proj.weight", [8, 8]), ("out_proj.bias", [8])]
    assert [w.name for w in c.weights] == ["in_proj_weight", "out_proj.weight"]
    assert a.params == 4 * 64 + 4 * 8 and c.params == 4 * 64
    e, t, tk = 8, 6, 4
    assert a.flops == 2 * (4 * t * e * e + 2 * t * t * e)
    assert c.flops == 2 * (2 * t * e * e + 2 * tk * e * e + 2 * t * tk * e)
    g = Graph(p.model)
    assert set(g.weight_shapes()) == {"multihead_attention_1.in_proj_weight", "multihead_attention_1.in_proj_bias",
                                      "multihead_attention_1.out_proj.weight", "multihead_attention_1.out_proj.bias",
                                      "multihead_attention_2.in_proj_weight", "multihead_attention_2.out_proj.weight"}


@pytest.mark.parametrize("body", [
    "input x: [5, 8]\nlet h = 2\nmultihead_attention(h)",                # a constant is the head count
    "input x: [5, 8]\nmultihead_attention(heads=2)",
    "input x: [5, 8]\ny = dense(8) -> multihead_attention(2) -> relu",     # mid-pipeline
    "input x: [5, 8]\nlet att = multihead_attention(2)\ndense(8) -> att",
])
def test_single_input_forms_are_self_attention(body):
    (node,) = [n for n in program_of(body).model.nodes if n.op == "multihead_attention"]
    assert len(node.inputs) == 1 and node.attrs["heads"] == 2


def test_attention_initialisation_follows_torch():
    e = 64
    p = program_of(f"input x: [3, {e}]\nmultihead_attention(8)")
    (node,) = p.model.nodes
    inits = {w.name: w.init for w in node.weights}
    assert inits["in_proj_weight"] == {"kind": "glorot_uniform"}
    assert inits["in_proj_bias"]["kind"] == inits["out_proj.bias"]["kind"] == "zeros"
    assert inits["out_proj.weight"] == {"kind": "uniform", "low": -1 / math.sqrt(e), "high": 1 / math.sqrt(e)}
    w = Graph(p.model).init_weights(0)
    in_bound, out_bound = math.sqrt(6 / (e + 3 * e)), 1 / math.sqrt(e)
    wi, wo = w["multihead_attention_1.in_proj_weight"], w["multihead_attention_1.out_proj.weight"]
    assert np.abs(wi).max() <= in_bound and np.abs(wi).max() > 0.98 * in_bound
    assert np.abs(wo).max() <= out_bound and np.abs(wo).max() > 0.98 * out_bound
    assert not w["multihead_attention_1.in_proj_bias"].any() and not w["multihead_attention_1.out_proj.bias"].any()
    # the same bounds as torch's own module
    mod = torch.nn.MultiheadAttention(e, 8, batch_first=True)
    assert mod.in_proj_weight.abs().max().item() <= in_bound
    assert 0.98 * out_bound < mod.out_proj.weight.abs().max().item() <= out_bound


@pytest.mark.parametrize("body, code, needle", [
    ("input x: [10, 30]\nmultihead_attention(4)", "E224", "heads=4"),
    ("input x: [10, 2]\nmultihead_attention(4)", "E224", "E = 2"),
    ("input x: [64]\nmultihead_attention(4)", "E223", "[64]"),
    ("input q: [3, 4]\ninput kv: [5]\nmultihead_attention(q, kv, heads=2)", "E223", "(key/value)"),
    ("input q: [3, 4]\ninput kv: [5, 8]\nmultihead_attention(q, kv, heads=2)", "E225", "[5, 8] (key/value)"),
    ("input q: [3, 4]\ninput kv: [5, 4]\nmultihead_attention(q, kv, heads=2, causal=true)", "E226", "causal"),
    ("input q: [3, 4]\ninput kv: [5, 4]\nmultihead_attention(q, kv, kv, heads=2)", "E404", "got 3 inputs"),
    ("input q: [3, 4]\nmultihead_attention(q, heads=2)", "E403", "at least two inputs"),
    ("input x: [3, 4]\nmultihead_attention(2, dropout=1)", "E402", "dropout"),
    ("input x: [3, 4]\nmultihead_attention(0)", "E402", "heads"),
    ("input x: [3, 4]\ny = relu\nx -> multihead_attention(y, x, heads=2)", "E313", "start its pipeline"),
])
def test_attention_errors(body, code, needle):
    errors = compile_error(body)
    assert any(c == code and needle in m for c, m in errors), errors


def test_heads_hint_names_the_nearest_divisors():
    with pytest.raises(NncError) as err:
        program_of("input x: [10, 30]\nmultihead_attention(4)")
    (d,) = err.value.diagnostics
    assert "`heads=3` or `heads=5`" in d.hint and "dense(32)" in d.hint
    with pytest.raises(NncError) as err:
        program_of("input x: [10, 2]\nmultihead_attention(4)")
    assert "`heads=2` (divisors of 2)" in err.value.diagnostics[0].hint


# ----------------------------------------------------------------------------------------------
# positional ops and normalize

@pytest.mark.parametrize("t, e", [(5, 6), (4, 5), (3, 1), (7, 2)])
def test_positional_encoding_is_the_sinusoid_table(t, e):
    x = np.zeros((2, t, e))
    y, _ = KERNELS["positional_encoding"].forward([x], {}, {}, Ctx())
    for pos in range(t):
        for j in range(e):
            i2 = j - j % 2
            angle = pos / 10000 ** (i2 / e)
            want = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert y[1, pos, j] == pytest.approx(want, abs=1e-15), (pos, j)
    y32, _ = KERNELS["positional_encoding"].forward([x.astype(np.float32)], {}, {}, Ctx())
    assert y32.dtype == np.float32


def test_positional_ops_compile():
    p = program_of("input x: [6, 4]\npositional_embedding -> positional_encoding")
    emb, enc = p.model.nodes
    assert [(w.name, w.shape, w.init) for w in emb.weights] == [
        ("weight", [6, 4], {"kind": "normal", "mean": 0.0, "std": 0.02})]
    assert emb.params == 24 and enc.params == 0 and not enc.weights
    w = Graph(p.model).init_weights(0)["positional_embedding_1.weight"]
    assert 0.005 < w.std() < 0.05
    p = program_of("input x: [6, 4]\npositional_embedding(init=zeros)")
    assert p.model.nodes[0].weights[0].init == {"kind": "zeros"}
    for body in ("input x: [6]\npositional_embedding", "input x: [2, 3, 4]\npositional_encoding"):
        assert compile_error(body)[0][0] == "E223"


def test_normalize_uses_the_given_statistics_and_keeps_them_as_state():
    p = program_of("input x: [3, 4, 5]\nnormalize(axis=0, eps=0.01)")
    (node,) = p.model.nodes
    assert node.attrs["axis"] == 0 and node.params == 0
    assert [(w.name, w.shape, w.trainable) for w in node.weights] == [("mean", [3], False), ("var", [3], False)]
    assert program_of("input x: [3, 4, 5]\nnormalize(axis=-2)").model.nodes[0].weights[0].shape == [4]
    g = Graph(p.model)
    w = g.init_weights(0)
    assert g.trainable_keys() == []
    np.testing.assert_array_equal(w["normalize_1.mean"], 0)
    np.testing.assert_array_equal(w["normalize_1.var"], 1)
    w = {"normalize_1.mean": np.array([1.0, -2.0, 0.5]), "normalize_1.var": np.array([4.0, 0.25, 9.0])}
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    y = g.forward({"x": x}, w)["output"]
    want = (x - w["normalize_1.mean"][:, None, None]) / np.sqrt(w["normalize_1.var"][:, None, None] + 0.01)
    np.testing.assert_allclose(y, want, rtol=1e-12)
    assert compile_error("input x: [4, 6]\nnormalize(axis=2)")[0][0] == "E211"


# ----------------------------------------------------------------------------------------------
# activations: PyTorch's functions and gradients, including exactly at the kinks

KINKS = np.array([-9.0, -6.0, -3.0, -3 + 1e-9, -1.0, -1e-300, 0.0, 1e-300, 0.5, 2.0, 3.0 - 1e-9, 3.0, 4.0,
                  6.0 - 1e-9, 6.0, 7.5, 12.0])


@pytest.mark.parametrize("op, a, fn, rtol", [
    ("relu6", {}, F.relu6, 1e-15),
    # NOTE: torch's float64 hardsigmoid backward uses 1.0f / 6.0f, a float32 constant (3e-8 relative)
    ("hardsigmoid", {}, F.hardsigmoid, 1e-7),
    ("hardswish", {}, F.hardswish, 1e-15),
    ("clip", {"min": -3.0, "max": 6.0}, lambda x: torch.clamp(x, -3.0, 6.0), 1e-15),
    ("clip", {"min": -1.0, "max": 0.5}, lambda x: torch.clamp(x, -1.0, 0.5), 1e-15),
    ("clip", {"min": 0.0, "max": 0.0}, lambda x: torch.clamp(x, 0.0, 0.0), 1e-15),
])
def test_activations_match_torch_at_the_kinks(op, a, fn, rtol):
    x = np.concatenate([KINKS, np.linspace(-10, 10, 401), [a.get("min", 0.0), a.get("max", 0.0)]])[None]
    y, cache = KERNELS[op].forward([x], {}, a, Ctx())
    dy = np.random.default_rng(0).uniform(0.5, 2, x.shape)
    (dx,), _ = KERNELS[op].backward(dy, cache)
    tx = torch.tensor(x, requires_grad=True)
    ty = fn(tx)
    (ty * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=rtol, atol=0)
    x32 = x.astype(np.float32)
    y32, cache = KERNELS[op].forward([x32], {}, a, Ctx())
    (dx32,), _ = KERNELS[op].backward(dy.astype(np.float32), cache)
    assert y32.dtype == dx32.dtype == np.float32


@pytest.mark.parametrize("body, code", [
    ("input x: [4]\nclip(1, -1)", "E402"),
    ("input x: [4]\nclip(max=-1, min=1)", "E402"),
    ("input x: [4]\nclip(1)", "E403"),
    ("input x: [4]\nclip", "E403"),
    ("input x: [4]\nclip(0, 1, 2)", "E404"),
    ("input x: [4]\nrelu6(1)", "E404"),
])
def test_clip_needs_both_bounds_in_order(body, code):
    assert compile_error(body)[0][0] == code


def test_clip_bounds_positional_or_keyword_and_equal():
    for body in ("clip(-1, 2)", "clip(min=-1, max=2)", "clip(-1, max=2)", "clip(max=2, min=-1)"):
        (node,) = program_of(f"input x: [4]\n{body}").model.nodes
        assert (node.attrs["min"], node.attrs["max"]) == (-1.0, 2.0)
    assert program_of("input x: [4]\nclip(0.5, 0.5)").model.nodes[0].attrs["min"] == 0.5


# ----------------------------------------------------------------------------------------------
# broadcasting merges

@pytest.mark.parametrize("shapes, out", [
    ([[3, 4, 5], [3, 1, 1]], [3, 4, 5]),
    ([[3, 4, 5], [5]], [3, 4, 5]),           # a rank-1 value aligns with the LAST axis, as in NumPy
    ([[3, 1, 5], [4, 1]], [3, 4, 5]),
    ([[1, 4], [3, 1], [4]], [3, 4]),
    ([[6], [1]], [6]),
    ([[2, 3], [2, 3]], [2, 3]),
])
def test_broadcast_shapes(shapes, out):
    inputs = "\n".join(f"input i{k}: {s}" for k, s in enumerate(shapes))
    names = ", ".join(f"i{k}" for k in range(len(shapes)))
    for op in ("add", "multiply"):
        p = program_of(f"{inputs}\n{op}({names})")
        assert p.model.nodes[0].shape == out
        assert list(np.broadcast_shapes(*map(tuple, shapes))) == out     # NumPy agrees
        xs = {f"i{k}": np.random.default_rng(k).standard_normal((2, *s)) for k, s in enumerate(shapes)}
        y = Graph(p.model, "float64").forward(xs, {})["output"]
        ref = xs["i0"]
        for k in range(1, len(shapes)):
            other = xs[f"i{k}"]
            other = other.reshape(other.shape[:1] + (1,) * (len(out) - len(shapes[k])) + other.shape[1:])
            ref = ref + other if op == "add" else ref * other
        np.testing.assert_allclose(y, ref, rtol=1e-15)


@pytest.mark.parametrize("shapes, hint", [
    ([[3, 4, 5], [3]], "reshape([3, 1, 1])"),
    ([[32], [16]], "project one"),
    ([[3, 4], [4, 3]], "project one"),
])
def test_shapes_that_do_not_broadcast_are_e203(shapes, hint):
    inputs = "\n".join(f"input i{k}: {s}" for k, s in enumerate(shapes))
    with pytest.raises(NncError) as err:
        program_of(f"{inputs}\nmultiply(i0, i1)")
    (d,) = err.value.diagnostics
    assert d.code == "E203" and "broadcast" in d.message and hint in d.hint


def test_squeeze_and_excitation_trains_the_gate_through_the_broadcast():
    """The gate [C, 1, 1] gets its gradient summed over H and W (the graph's backward)."""
    p = program_of("input x: [4, 3, 3]\ns = globalavgpool2d -> dense(4) -> sigmoid -> reshape([4, 1, 1])\n"
                   "multiply(x, s) -> flatten -> dense(2)")
    g = Graph(p.model, "float64")
    w = {k: v.astype(np.float64) for k, v in g.init_weights(0).items()}
    x = np.random.default_rng(0).standard_normal((5, 4, 3, 3))
    outs, tape = g.forward({"x": x}, w, keep=True)
    R = np.random.default_rng(1).standard_normal(outs["output"].shape)
    grads = g.backward(tape, {p.model.outputs[0].source: R})
    key = "dense_1.weight"
    eps, num = 1e-6, np.zeros_like(w[key])
    for idx in np.ndindex(w[key].shape):
        for sign in (1, -1):
            w2 = dict(w)
            w2[key] = w[key].copy()
            w2[key][idx] += sign * eps
            num[idx] += sign * float(np.sum(g.forward({"x": x}, w2)["output"] * R)) / (2 * eps)
    np.testing.assert_allclose(grads[key], num, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# export: every opset, non-trivial weights, wide inputs through the kinks

def random_weights(program, seed=0, var_scale=1.0):
    """Every weight random (biases and statistics included); normalize's variances positive."""
    rng = np.random.default_rng(seed)
    w = Graph(program.model).init_weights(program.seed)
    for key, arr in w.items():
        if key.endswith(".var"):
            w[key] = (var_scale * rng.uniform(0.5, 2.0, arr.shape)).astype(np.float32)
        else:
            w[key] = (0.5 * rng.standard_normal(arr.shape)).astype(np.float32)
    return w


ATTENTION = """
input x: [5, 8]
input m: [3, 8]
h = x -> positional_encoding -> positional_embedding
a = h -> multihead_attention(2, causal=true)
r = add(h, a) -> normalize(axis=-1)
c = multihead_attention(r, m, heads=4)
s = add(r, c) -> hardswish
g = s -> dense(1) -> hardsigmoid
multiply(s, g) -> relu6 -> clip(-0.5, 4)
"""


@pytest.mark.parametrize("opset", list(E.supported_opsets()))
def test_the_family_exports_at_every_opset(opset):
    program = program_of(ATTENTION)
    exp, worst = roundtrip(program, weights=random_weights(program), opset=opset, batches=(1, 3))
    assert worst <= 1e-4
    ops = set(op_types(exp))
    assert ops <= {"MatMul", "Add", "Reshape", "Transpose", "Softmax", "Sub", "Sqrt", "Div", "Mul", "Clip",
                   "HardSigmoid", "HardSwish", "Gemm"}
    assert ("HardSwish" in ops) == (opset >= 14)
    assert all(o.domain == "" for o in exp.proto.opset_import)       # standard ONNX only


def test_activations_export_over_their_whole_range():
    """normalize with small variances spreads the standard normal inputs over [-10, 10]."""
    program = program_of("input x: [4, 40]\nn = normalize\na = n -> relu6\nb = n -> hardsigmoid\n"
                         "c = n -> hardswish\nd = n -> clip(-2.5, 3)\noutput a, b, c, d")
    w = random_weights(program, var_scale=1 / 25)
    w["normalize_1.mean"][:] = 0
    _, worst = roundtrip(program, weights=w, batches=(1, 5))
    assert worst <= 1e-4


def test_attention_onnx_graph_is_standard_and_keeps_the_batch_symbolic(tmp_path):
    program = program_of("input x: [6, 8]\nmultihead_attention(4, causal=true, dropout=0.2)")
    exp = E.build(program, random_weights(program))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in exp.proto.graph.initializer}
    assert inits["multihead_attention_1.causal_mask"].shape == (6, 6)
    assert np.isneginf(inits["multihead_attention_1.causal_mask"][0, 1])
    assert "Dropout" not in op_types(exp)
    out = tmp_path / "att.onnx"
    report = E.export_onnx(program, out, weights=random_weights(program))
    assert "verified" in report
    sess = __import__("onnxruntime").InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 9):
        (y,) = sess.run(None, {"x": np.zeros((batch, 6, 8), np.float32)})
        assert y.shape == (batch, 6, 8)


# ----------------------------------------------------------------------------------------------
# end to end: a tiny Transformer encoder layer checks, trains and exports

ENCODER = """
# A one-layer Transformer encoder classifying sequences [T, F].
let width = 16

model tiny_encoder {
    input seq: [8, 3]

    h = dense(width) -> positional_encoding
    a = h -> multihead_attention(4, dropout=0.1)
    r = add(h, a) -> layernorm
    f = r -> dense(32) -> relu -> dense(width)
    add(r, f) -> layernorm
    flatten -> dense(3) -> softmax

    assert shape(a) == [8, 16]
    assert params <= 10_000
}

train {
    loss       = cross_entropy
    optimizer  = adam(lr=0.01)
    epochs     = 10
    batch_size = 32
    seed       = 0
}
"""


def encoder_data(n=1000, seed=0):
    """Class = which of the three features has the largest value at the step that the sign of the
    first step points to (step 2 or step 6): attention must look up a position."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8, 3)).astype(np.float32)
    step = np.where(x[:, 0, 0] > 0, 2, 6)
    y = np.argmax(x[np.arange(n), step], axis=1).astype(np.int64)
    return x, y


def test_tiny_transformer_encoder_checks_trains_and_exports(tmp_path, capsys):
    spec = tmp_path / "tiny_encoder.nnspec"
    spec.write_text(ENCODER)
    assert main(["check", str(spec)]) == 0
    assert main(["summary", str(spec)]) == 0
    text = capsys.readouterr().out
    assert "multihead_attention_1" in text and "positional_encoding_1" in text

    model = nnc.load(spec)
    x, y = encoder_data()
    before = {k: v.copy() for k, v in model.weights.items()}
    history = model.fit(x, y, validation_data=encoder_data(300, seed=1))
    assert len(history) == 10
    losses = [h["loss"] for h in history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert not np.array_equal(before["multihead_attention_1.in_proj_weight"],
                              model.weights["multihead_attention_1.in_proj_weight"])
    # chance is 1/3; the run reaches about 0.7 (and 0.9 after 30 epochs)
    assert history[-1]["val_accuracy"] >= 0.55

    # the same seed trains to the same weights (dropout on the attention weights included)
    one, two = nnc.load(spec), nnc.load(spec)
    one.fit(x[:300], y[:300], epochs=2)
    two.fit(x[:300], y[:300], epochs=2)
    for k in one.weights:
        np.testing.assert_array_equal(one.weights[k], two.weights[k], err_msg=k)

    out = tmp_path / "tiny_encoder.onnx"
    report = model.export(out)
    assert "verified: checker, shapes, onnxruntime" in report
    sess = __import__("onnxruntime").InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (probs,) = sess.run(None, {"seq": x[:10]})
    np.testing.assert_allclose(probs, model.predict(x[:10]), rtol=1e-4, atol=1e-5)

    # and through `nnc train` on an npz file
    np.savez(tmp_path / "data.npz", x=x, y=y)
    spec.write_text(ENCODER.replace("train {", 'train {\n    data = npz("data.npz")\n    validation = 0.2'))
    run = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(run), "--quiet", "--set", "epochs=2"]) == 0
    assert (run / "model.onnx").exists() and (run / "weights.npz").exists()
    with np.load(run / "weights.npz") as z:
        assert z["multihead_attention_1.out_proj.weight"].shape == (16, 16)
