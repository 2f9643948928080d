"""Parity of the NumPy kernels with PyTorch (forward, input and weight gradients, running stats).

Skipped when torch is not installed; torch is never a dependency of nnc.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from nnc.runtime.kernels import KERNELS, Ctx

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _conv2d(x, w, a):
    t, l, b, r = a["pads"]
    return F.conv2d(F.pad(x, (l, r, t, b)), w["weight"], w.get("bias"), stride=a["stride"],
                    dilation=a["dilation"])


def _conv1d(x, w, a):
    return F.conv1d(F.pad(x, tuple(a["pads"])), w["weight"], w.get("bias"), stride=a["stride"],
                    dilation=a["dilation"])


def _pool(kind):
    def fn(x, w, a):
        t, l, b, r = a["pads"]
        if kind == "max":
            return F.max_pool2d(F.pad(x, (l, r, t, b), value=-float("inf")), a["size"], a["stride"])
        return F.avg_pool2d(F.pad(x, (l, r, t, b)), a["size"], a["stride"])
    return fn


def _recurrent(cls, **kw):
    def fn(x, w, a):
        u = a["units"]
        mod = cls(x.shape[-1], u, batch_first=True, bias="bias_ih" in w, **kw).double()
        with torch.no_grad():
            for name, p in w.items():
                getattr(mod, name + "_l0").copy_(p)
        # the weights are fed in as leaf tensors so their gradients can be read back
        params = {name: getattr(mod, name + "_l0") for name in w}
        out, _ = mod(x)
        fn.params = params
        return out if a["return_sequences"] else out[:, -1]
    return fn


def _mha(is_causal=False):
    """torch.nn.MultiheadAttention(E, heads, batch_first=True) with nnc's weights loaded by name;
    causal as a boolean upper-triangle attn_mask (plus the is_causal hint if asked)."""
    def fn(*args):
        *xs, w, a = args
        q, kv = xs[0], xs[-1]
        mod = torch.nn.MultiheadAttention(q.shape[-1], a["heads"], dropout=a["dropout"], bias=a["bias"],
                                          batch_first=True).double()
        mod.load_state_dict({k: v.detach() for k, v in w.items()})      # strict: the names must match
        mask = torch.triu(torch.ones(q.shape[1], kv.shape[1], dtype=torch.bool), 1) if a["causal"] else None
        out, _ = mod(q, kv, kv, need_weights=False, attn_mask=mask, is_causal=is_causal)
        fn.params = dict(mod.named_parameters())
        return out
    return fn


def _sinusoids(x, w, a):
    """The PyTorch tutorial's PositionalEncoding (odd E: the cosines take the first E // 2 rates)."""
    t, e = x.shape[1:]
    pos = torch.arange(t, dtype=torch.float64)[:, None]
    rate = torch.exp(torch.arange(0, e, 2, dtype=torch.float64) * (-math.log(10000.0) / e))
    pe = torch.zeros(t, e, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * rate)
    pe[:, 1::2] = torch.cos(pos * rate[:e // 2])
    return x + pe


def _mha_row(label, shapes, heads, causal=False, bias=True, is_causal=False):
    e = shapes[0][-1]
    w = {"in_proj_weight": (3 * e, e), "in_proj_bias": (3 * e,), "out_proj.weight": (e, e), "out_proj.bias": (e,)}
    if not bias:
        w = {k: v for k, v in w.items() if "bias" not in k}
    a = dict(heads=heads, causal=causal, dropout=0.0, bias=bias, head_dim=e // heads)
    return (label, "multihead_attention", a, shapes, w, _mha(is_causal))


def _bn(x, w, a):
    return F.batch_norm(x, w["running_mean"], w["running_var"], w["weight"], w["bias"],
                        training=True, momentum=1 - a["momentum"], eps=a["eps"])


# (id, op, attrs, [(kind, shape)], {weight: shape}, torch function (x, w, a) -> y)
TABLE = [
    ("dense", "dense", dict(units=3, bias=True), [(4, 5)], {"weight": (3, 5), "bias": (3,)},
     lambda x, w, a: F.linear(x, w["weight"], w["bias"])),
    ("dense-rank3", "dense", dict(units=3, bias=False), [(2, 4, 5)], {"weight": (3, 5)},
     lambda x, w, a: F.linear(x, w["weight"])),
    ("conv2d", "conv2d", dict(stride=[2, 1], dilation=[1, 2], pads=[1, 0, 2, 1], bias=True),
     [(2, 3, 9, 8)], {"weight": (4, 3, 3, 2), "bias": (4,)}, _conv2d),
    ("conv1d", "conv1d", dict(stride=[2], dilation=[2], pads=[2, 1], bias=True),
     [(2, 3, 11)], {"weight": (4, 3, 3), "bias": (4,)}, _conv1d),
    ("maxpool2d", "maxpool2d", dict(size=[3, 2], stride=[2, 1], pads=[1, 0, 1, 1]),
     [(2, 2, 7, 6)], {}, _pool("max")),
    ("avgpool2d", "avgpool2d", dict(size=[3, 2], stride=[2, 1], pads=[1, 0, 1, 1]),
     [(2, 2, 7, 6)], {}, _pool("avg")),
    ("globalavgpool2d", "globalavgpool2d", {}, [(2, 3, 4, 5)], {},
     lambda x, w, a: x.mean(dim=(2, 3))),
    ("batchnorm-NCHW", "batchnorm", dict(momentum=0.9, eps=1e-5), [(4, 3, 2, 5)],
     {"weight": (3,), "bias": (3,), "running_mean": (3,), "running_var": (3,)}, _bn),
    ("batchnorm-NC", "batchnorm", dict(momentum=0.9, eps=1e-5), [(6, 4)],
     {"weight": (4,), "bias": (4,), "running_mean": (4,), "running_var": (4,)}, _bn),
    ("layernorm", "layernorm", dict(eps=1e-5), [(2, 3, 6)], {"weight": (6,), "bias": (6,)},
     lambda x, w, a: F.layer_norm(x, (6,), w["weight"], w["bias"], a["eps"])),
    ("rnn-tanh", "rnn", dict(units=4, return_sequences=True, activation="tanh"), [(3, 5, 2)],
     {"weight_ih": (4, 2), "weight_hh": (4, 4), "bias_ih": (4,), "bias_hh": (4,)},
     _recurrent(torch.nn.RNN, nonlinearity="tanh")),
    ("rnn-relu", "rnn", dict(units=4, return_sequences=False, activation="relu"), [(3, 5, 2)],
     {"weight_ih": (4, 2), "weight_hh": (4, 4), "bias_ih": (4,), "bias_hh": (4,)},
     _recurrent(torch.nn.RNN, nonlinearity="relu")),
    ("lstm", "lstm", dict(units=3, return_sequences=True), [(2, 6, 4)],
     {"weight_ih": (12, 4), "weight_hh": (12, 3), "bias_ih": (12,), "bias_hh": (12,)},
     _recurrent(torch.nn.LSTM)),
    ("gru", "gru", dict(units=3, return_sequences=False), [(2, 6, 4)],
     {"weight_ih": (9, 4), "weight_hh": (9, 3), "bias_ih": (9,), "bias_hh": (9,)},
     _recurrent(torch.nn.GRU)),
    ("softmax", "softmax", dict(axis=1), [(2, 3, 4)], {}, lambda x, w, a: F.softmax(x, dim=2)),
    ("log_softmax", "log_softmax", dict(axis=0), [(3, 5)], {},
     lambda x, w, a: F.log_softmax(x, dim=1)),
    ("relu", "relu", {}, [(3, 7)], {}, lambda x, w, a: F.relu(x)),
    ("sigmoid", "sigmoid", {}, [(3, 7)], {}, lambda x, w, a: torch.sigmoid(x)),
    ("tanh", "tanh", {}, [(3, 7)], {}, lambda x, w, a: torch.tanh(x)),
    ("leaky_relu", "leaky_relu", dict(alpha=0.2), [(3, 7)], {},
     lambda x, w, a: F.leaky_relu(x, 0.2)),
    ("elu", "elu", dict(alpha=0.7), [(3, 7)], {}, lambda x, w, a: F.elu(x, 0.7)),
    ("selu", "selu", {}, [(3, 7)], {}, lambda x, w, a: F.selu(x)),
    ("gelu", "gelu", {}, [(3, 7)], {}, lambda x, w, a: F.gelu(x)),
    ("softplus", "softplus", {}, [(3, 7)], {}, lambda x, w, a: F.softplus(x)),
    ("silu", "silu", {}, [(3, 7)], {}, lambda x, w, a: F.silu(x)),
    ("relu6", "relu6", {}, [(4, 9)], {}, lambda x, w, a: F.relu6(x)),
    # NOTE: F.hardsigmoid's float64 backward multiplies by 1.0f / 6.0f, a float32 constant (relative
    # error 3e-8); its own definition relu6(x + 3) / 6 is exact. tests/test_ops_attention.py compares
    # with F.hardsigmoid itself (kinks included) at that tolerance.
    ("hardsigmoid", "hardsigmoid", {}, [(4, 9)], {}, lambda x, w, a: F.relu6(x + 3) / 6),
    ("hardswish", "hardswish", {}, [(4, 9)], {}, lambda x, w, a: F.hardswish(x)),
    ("clip", "clip", dict(min=-2.5, max=4.0), [(4, 9)], {}, lambda x, w, a: torch.clamp(x, -2.5, 4.0)),
    # broadcasting merges: the reference spells out the batch-aware alignment (a lower-rank input
    # gets its size-1 axes after the batch axis)
    ("add-broadcast-C11", "add", {}, [(2, 3, 4, 5), (2, 3, 1, 1)], {}, lambda x, y, w, a: x + y),
    ("add-broadcast-rank1", "add", {}, [(2, 3, 4, 5), (2, 5)], {}, lambda x, y, w, a: x + y[:, None, None, :]),
    ("add-broadcast-3", "add", {}, [(2, 1, 4), (2, 3, 1), (2, 4)], {},
     lambda x, y, z, w, a: x + y + z[:, None, :]),
    ("multiply-broadcast-both", "multiply", {}, [(2, 1, 4), (2, 3, 1)], {}, lambda x, y, w, a: x * y),
    ("multiply-broadcast-rank1", "multiply", {}, [(2, 3, 4, 5), (2, 4, 1)], {},
     lambda x, y, w, a: x * y[:, None, :, :]),
    # attention, positional encodings, normalize
    _mha_row("mha-self", [(2, 5, 6)], 2),
    _mha_row("mha-self-1head-nobias", [(3, 4, 4)], 1, bias=False),
    _mha_row("mha-causal-attn_mask", [(2, 5, 6)], 3, causal=True),
    _mha_row("mha-causal-is_causal", [(2, 6, 4)], 2, causal=True, is_causal=True),
    _mha_row("mha-causal-nobias", [(2, 5, 6)], 2, causal=True, bias=False),
    _mha_row("mha-cross", [(2, 4, 6), (2, 7, 6)], 3),
    _mha_row("mha-cross-nobias", [(3, 2, 8), (3, 5, 8)], 4, bias=False),
    ("positional_embedding", "positional_embedding", dict(init={"kind": "normal", "mean": 0.0, "std": 0.02}),
     [(3, 4, 5)], {"weight": (4, 5)}, lambda x, w, a: x + w["weight"]),
    ("positional_encoding-even", "positional_encoding", {}, [(2, 7, 6)], {}, _sinusoids),
    ("positional_encoding-odd", "positional_encoding", {}, [(2, 7, 5)], {}, _sinusoids),
    ("normalize-last", "normalize", dict(axis=1, eps=1e-5), [(3, 4, 5)], {"mean": (5,), "var": (5,)},
     lambda x, w, a: (x - w["mean"]) / torch.sqrt(w["var"] + a["eps"])),
    ("normalize-axis0", "normalize", dict(axis=0, eps=1e-3), [(3, 4, 5)], {"mean": (4,), "var": (4,)},
     lambda x, w, a: (x - w["mean"][:, None]) / torch.sqrt(w["var"][:, None] + a["eps"])),
]


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_matches_torch(row):
    label, op, a, shapes, wshapes, tfn = row
    rng = np.random.default_rng(0)
    xs = [8 * rng.standard_normal(s) if op in ("softplus", "gelu", "elu", "selu", "relu6", "hardsigmoid",
                                                "hardswish", "clip")
          else rng.standard_normal(s) for s in shapes]
    if op == "maxpool2d":       # include ties: integer-valued inputs
        xs = [np.round(x * 2) for x in xs]
    w = {k: (rng.uniform(0.5, 2, s) if k in ("running_var", "var") else 0.5 * rng.standard_normal(s))
         for k, s in wshapes.items()}
    a = dict(a)

    w_np = {k: v.copy() for k, v in w.items()}
    y, cache = KERNELS[op].forward(xs, w_np, a, Ctx(training=True))
    R = rng.standard_normal(y.shape)
    dxs, dw = KERNELS[op].backward(R, cache)

    tx = [torch.tensor(x, requires_grad=True) for x in xs]
    tw = {k: torch.tensor(v, requires_grad=k not in ("running_mean", "running_var", "mean", "var"))
          for k, v in w.items()}
    ty = tfn(*tx, tw, a)
    (ty * torch.tensor(R)).sum().backward()
    params = getattr(tfn, "params", tw)

    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10,
                               err_msg=f"{label}: forward")
    for i, x in enumerate(tx):
        np.testing.assert_allclose(dxs[i], x.grad.numpy(), rtol=1e-9, atol=1e-10,
                                   err_msg=f"{label}: backward of input {i}")
    for k in dw:
        np.testing.assert_allclose(dw[k], params[k].grad.numpy(), rtol=1e-9, atol=1e-10,
                                   err_msg=f"{label}: backward of {k}")
    for k in ("running_mean", "running_var"):
        if k in w:
            np.testing.assert_allclose(w_np[k], tw[k].numpy(), rtol=1e-12,
                                       err_msg=f"{label}: {k} update")
