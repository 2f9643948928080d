"""Parity of the NumPy kernels with PyTorch (forward, input and weight gradients, running stats).

Skipped when torch is not installed; torch is never a dependency of nnc.
"""
from __future__ import annotations

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
    """torch's module with nnc's weights copied in by name (the contract's names are torch's, with
    `_l0` implied for one forward layer); y = output, or h_n of the last layer's directions side by
    side (PyTorch's h_n[-2:] when bidirectional)."""
    def fn(x, w, a):
        u = a["units"]
        mod = cls(x.shape[-1], u, batch_first=True, bias="bias_ih" in w or "bias_ih_l0" in w,
                  bidirectional=a["bidirectional"], num_layers=a["layers"], **kw).double()
        torch_name = {k: k if a["suffixes"] != [[""]] else k + "_l0" for k in w}
        assert set(torch_name.values()) == set(mod.state_dict()), "the contract's names are torch's"
        with torch.no_grad():
            for name, p in w.items():
                getattr(mod, torch_name[name]).copy_(p)
        # the weights are fed in as leaf tensors so their gradients can be read back
        params = {name: getattr(mod, torch_name[name]) for name in w}
        out, h_n = mod(x)
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n
        fn.params = params
        d = 2 if a["bidirectional"] else 1
        return out if a["return_sequences"] else torch.cat(list(h_n[-d:]), dim=-1)
    return fn


def _rnn(op, xshape, u, seq, activation=None, bidirectional=False, layers=1):
    """(attrs, [x shape], {weight: shape}) of a recurrent layer on x (N, T, F), as the compiler
    makes them."""
    f = xshape[-1]
    from nnc.compiler.ops import _rnn_suffixes
    g = {"rnn": 1, "lstm": 4, "gru": 3}[op]
    a = dict(units=u, return_sequences=seq, bidirectional=bidirectional, layers=layers, dropout=0.0)
    if activation:
        a["activation"] = activation
    a["suffixes"] = _rnn_suffixes(a)
    shapes = {}
    for k, suffixes in enumerate(a["suffixes"]):
        for s in suffixes:
            shapes.update({f"weight_ih{s}": (g * u, f if k == 0 else len(suffixes) * u),
                           f"weight_hh{s}": (g * u, u), f"bias_ih{s}": (g * u,), f"bias_hh{s}": (g * u,)})
    return a, [xshape], shapes


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
    ("rnn-tanh", "rnn", *_rnn("rnn", (3, 5, 2), 4, True, "tanh"),
     _recurrent(torch.nn.RNN, nonlinearity="tanh")),
    ("rnn-relu", "rnn", *_rnn("rnn", (3, 5, 2), 4, False, "relu"),
     _recurrent(torch.nn.RNN, nonlinearity="relu")),
    ("lstm", "lstm", *_rnn("lstm", (2, 6, 4), 3, True), _recurrent(torch.nn.LSTM)),
    ("gru", "gru", *_rnn("gru", (2, 6, 4), 3, False), _recurrent(torch.nn.GRU)),
    ("rnn-tanh-bi-l2-seq", "rnn", *_rnn("rnn", (3, 5, 3), 4, True, "tanh", True, 2),
     _recurrent(torch.nn.RNN, nonlinearity="tanh")),
    ("rnn-relu-bi-l2-last", "rnn", *_rnn("rnn", (3, 5, 3), 4, False, "relu", True, 2),
     _recurrent(torch.nn.RNN, nonlinearity="relu")),
    ("rnn-tanh-bi-last", "rnn", *_rnn("rnn", (2, 4, 2), 3, False, "tanh", True),
     _recurrent(torch.nn.RNN, nonlinearity="tanh")),
    ("rnn-relu-l3-seq", "rnn", *_rnn("rnn", (2, 4, 2), 3, True, "relu", False, 3),
     _recurrent(torch.nn.RNN, nonlinearity="relu")),
    ("lstm-bi-l2-seq", "lstm", *_rnn("lstm", (2, 6, 4), 3, True, None, True, 2),
     _recurrent(torch.nn.LSTM)),
    ("lstm-bi-l2-last", "lstm", *_rnn("lstm", (2, 6, 4), 3, False, None, True, 2),
     _recurrent(torch.nn.LSTM)),
    ("lstm-bi-last", "lstm", *_rnn("lstm", (3, 5, 3), 2, False, None, True), _recurrent(torch.nn.LSTM)),
    ("lstm-l2-last", "lstm", *_rnn("lstm", (3, 5, 3), 2, False, None, False, 2),
     _recurrent(torch.nn.LSTM)),
    ("gru-bi-l2-seq", "gru", *_rnn("gru", (2, 6, 4), 3, True, None, True, 2), _recurrent(torch.nn.GRU)),
    ("gru-bi-l2-last", "gru", *_rnn("gru", (2, 6, 4), 3, False, None, True, 2),
     _recurrent(torch.nn.GRU)),
    ("gru-bi-seq", "gru", *_rnn("gru", (3, 5, 3), 2, True, None, True), _recurrent(torch.nn.GRU)),
    ("gru-l2-seq", "gru", *_rnn("gru", (3, 5, 3), 2, True, None, False, 2), _recurrent(torch.nn.GRU)),
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
]


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_matches_torch(row):
    label, op, a, shapes, wshapes, tfn = row
    rng = np.random.default_rng(0)
    xs = [8 * rng.standard_normal(s) if op in ("softplus", "gelu", "elu", "selu")
          else rng.standard_normal(s) for s in shapes]
    if op == "maxpool2d":       # include ties: integer-valued inputs
        xs = [np.round(x * 2) for x in xs]
    w = {k: (rng.uniform(0.5, 2, s) if k == "running_var" else 0.5 * rng.standard_normal(s))
         for k, s in wshapes.items()}
    a = dict(a)

    w_np = {k: v.copy() for k, v in w.items()}
    y, cache = KERNELS[op].forward(xs, w_np, a, Ctx(training=True))
    R = rng.standard_normal(y.shape)
    dxs, dw = KERNELS[op].backward(R, cache)

    tx = [torch.tensor(x, requires_grad=True) for x in xs]
    tw = {k: torch.tensor(v, requires_grad=k not in ("running_mean", "running_var"))
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
