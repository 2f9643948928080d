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
                    dilation=a["dilation"], groups=a["groups"])


def _conv1d(x, w, a):
    return F.conv1d(F.pad(x, tuple(a["pads"])), w["weight"], w.get("bias"), stride=a["stride"],
                    dilation=a["dilation"], groups=a["groups"])


def _conv_transpose2d(x, w, a):
    return F.conv_transpose2d(x, w["weight"], w.get("bias"), stride=a["stride"], padding=a["padding"],
                              output_padding=a["output_padding"], groups=a["groups"], dilation=a["dilation"])


def _convt(stride, padding, output_padding, dilation, groups, bias=True):
    return dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
                groups=groups, pads=padding * 2, bias=bias)


def _interpolate(x, w, a):
    extra = {} if a["mode"] == "nearest" else {"align_corners": False}
    return F.interpolate(x, scale_factor=tuple(a["scale"]), mode=a["mode"], **extra)


def _pool(kind):
    def fn(x, w, a):
        t, l, b, r = a["pads"]
        if kind == "max":
            return F.max_pool2d(F.pad(x, (l, r, t, b), value=-float("inf")), a["size"], a["stride"])
        return F.avg_pool2d(F.pad(x, (l, r, t, b)), a["size"], a["stride"])
    return fn


def _compiled(shape, stage):
    """The attrs the compiler gives ``stage`` on an input of per-example shape ``shape``."""
    from nnc.compiler.lower import compile_source
    dims = ", ".join(str(d) for d in shape)
    (node,) = compile_source(f"model m {{\n    input x: [{dims}]\n    {stage}\n}}\n", "m.nnspec").model.nodes
    return dict(node.attrs)


def _torch_pool(kind, nd):
    """PyTorch's own pool with the spec's parameters (padding, ceil_mode; count_include_pad=True)."""
    fn = {("max", 1): F.max_pool1d, ("max", 2): F.max_pool2d, ("avg", 1): F.avg_pool1d,
          ("avg", 2): F.avg_pool2d}[kind, nd]

    def pool(x, w, a):
        extra = {} if kind == "max" else {"count_include_pad": True}
        return fn(x, a["size"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"], **extra)
    return pool


def _pool_row(label, op, xshape, stage):
    return (label, op, _compiled(xshape[1:], stage), [xshape], {}, _torch_pool(op[:3], int(op[-2])))


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
    ("conv2d", "conv2d", dict(stride=[2, 1], dilation=[1, 2], pads=[1, 0, 2, 1], groups=1, bias=True),
     [(2, 3, 9, 8)], {"weight": (4, 3, 3, 2), "bias": (4,)}, _conv2d),
    ("conv1d", "conv1d", dict(stride=[2], dilation=[2], pads=[2, 1], groups=1, bias=True),
     [(2, 3, 11)], {"weight": (4, 3, 3), "bias": (4,)}, _conv1d),
    ("conv2d-groups2", "conv2d", dict(stride=[2, 1], dilation=[1, 2], pads=[1, 0, 2, 1], groups=2, bias=True),
     [(2, 4, 9, 8)], {"weight": (6, 2, 3, 2), "bias": (6,)}, _conv2d),
    ("conv2d-groups2-stride1", "conv2d", dict(stride=[1, 1], dilation=[1, 1], pads=[1, 1, 1, 1], groups=2,
                                              bias=True),
     [(3, 4, 6, 5)], {"weight": (4, 2, 3, 3), "bias": (4,)}, _conv2d),
    ("conv2d-depthwise", "conv2d", dict(stride=[1, 1], dilation=[2, 1], pads=[2, 1, 2, 1], groups=3, bias=True),
     [(2, 3, 7, 6)], {"weight": (3, 1, 3, 3), "bias": (3,)}, _conv2d),
    ("conv2d-depthwise-x2-stride2", "conv2d", dict(stride=[2, 2], dilation=[1, 1], pads=[0, 0, 0, 0], groups=3,
                                                   bias=False),
     [(2, 3, 7, 6)], {"weight": (6, 1, 3, 2)}, _conv2d),
    ("conv1d-groups2", "conv1d", dict(stride=[1], dilation=[1], pads=[1, 1], groups=2, bias=True),
     [(2, 4, 9)], {"weight": (6, 2, 3), "bias": (6,)}, _conv1d),
    ("conv1d-depthwise-stride2", "conv1d", dict(stride=[2], dilation=[2], pads=[2, 1], groups=4, bias=True),
     [(2, 4, 11)], {"weight": (4, 1, 3), "bias": (4,)}, _conv1d),
    ("conv2d_transpose", "conv2d_transpose", _convt([1, 1], [0, 0], [0, 0], [1, 1], 1),
     [(2, 3, 4, 5)], {"weight": (3, 2, 3, 3), "bias": (2,)}, _conv_transpose2d),
    ("conv2d_transpose-stride2", "conv2d_transpose", _convt([2, 2], [0, 0], [0, 0], [1, 1], 1),
     [(2, 3, 4, 5)], {"weight": (3, 4, 2, 2), "bias": (4,)}, _conv_transpose2d),
    ("conv2d_transpose-stride-pad-outpad", "conv2d_transpose", _convt([2, 3], [1, 2], [1, 2], [1, 1], 1),
     [(2, 2, 4, 5)], {"weight": (2, 3, 3, 4), "bias": (3,)}, _conv_transpose2d),
    ("conv2d_transpose-dilation-outpad", "conv2d_transpose", _convt([1, 2], [2, 0], [1, 0], [2, 1], 1),
     [(2, 2, 4, 5)], {"weight": (2, 2, 3, 3), "bias": (2,)}, _conv_transpose2d),
    ("conv2d_transpose-groups2", "conv2d_transpose", _convt([2, 1], [1, 0], [0, 1], [1, 2], 2),
     [(2, 4, 4, 5)], {"weight": (4, 3, 3, 2), "bias": (6,)}, _conv_transpose2d),
    ("conv2d_transpose-depthwise-nobias", "conv2d_transpose", _convt([3, 3], [1, 0], [2, 0], [1, 1], 4, False),
     [(2, 4, 3, 4)], {"weight": (4, 1, 3, 3)}, _conv_transpose2d),
    ("upsample2d-nearest", "upsample2d", dict(scale=[2, 3], mode="nearest"), [(2, 3, 4, 5)], {}, _interpolate),
    ("upsample2d-nearest-1x4", "upsample2d", dict(scale=[1, 4], mode="nearest"), [(2, 2, 3, 3)], {},
     _interpolate),
    ("upsample2d-bilinear", "upsample2d", dict(scale=[3, 2], mode="bilinear"), [(2, 3, 4, 5)], {}, _interpolate),
    ("upsample2d-bilinear-5x1", "upsample2d", dict(scale=[5, 1], mode="bilinear"), [(2, 2, 3, 4)], {},
     _interpolate),
    ("upsample2d-bilinear-edge", "upsample2d", dict(scale=[2, 4], mode="bilinear"), [(1, 2, 1, 2)], {},
     _interpolate),
    ("maxpool2d", "maxpool2d", dict(size=[3, 2], stride=[2, 1], pads=[1, 0, 1, 1], overhang=[0, 0]),
     [(2, 2, 7, 6)], {}, _pool("max")),
    ("avgpool2d", "avgpool2d", dict(size=[3, 2], stride=[2, 1], pads=[1, 0, 1, 1], overhang=[0, 0]),
     [(2, 2, 7, 6)], {}, _pool("avg")),
    ("globalavgpool2d", "globalavgpool2d", {}, [(2, 3, 4, 5)], {},
     lambda x, w, a: x.mean(dim=(2, 3))),
    # pooling, reductions and axis ops (issue 10): PyTorch's functions with the spec's parameters
    _pool_row("maxpool2d-ceil", "maxpool2d", (2, 2, 5, 7), "maxpool2d(2, ceil_mode=true)"),
    _pool_row("maxpool2d-ceil-rect-pad", "maxpool2d", (2, 2, 8, 7),
              "maxpool2d([3, 2], stride=[2, 3], padding=1, ceil_mode=true)"),
    _pool_row("maxpool2d-ceil-drops-last", "maxpool2d", (2, 1, 4, 6),
              "maxpool2d(2, stride=3, padding=1, ceil_mode=true)"),
    _pool_row("avgpool2d-ceil", "avgpool2d", (2, 2, 5, 7), "avgpool2d(2, ceil_mode=true)"),
    _pool_row("avgpool2d-ceil-rect-pad", "avgpool2d", (2, 2, 8, 7),
              "avgpool2d([3, 2], stride=[2, 3], padding=1, ceil_mode=true)"),
    _pool_row("avgpool2d-ceil-drops-last", "avgpool2d", (2, 1, 4, 6),
              "avgpool2d(2, stride=3, padding=1, ceil_mode=true)"),
    _pool_row("avgpool2d-ceil-overlap", "avgpool2d", (2, 2, 6, 6),
              "avgpool2d(3, stride=2, padding=1, ceil_mode=true)"),
    _pool_row("avgpool2d-padding", "avgpool2d", (2, 2, 6, 5), "avgpool2d(3, stride=2, padding=[1, 0])"),
    _pool_row("maxpool1d", "maxpool1d", (2, 3, 9), "maxpool1d(2)"),
    _pool_row("maxpool1d-overlap-pad", "maxpool1d", (2, 3, 9), "maxpool1d(3, stride=1, padding=1)"),
    _pool_row("maxpool1d-ceil-pad", "maxpool1d", (2, 2, 9), "maxpool1d(4, stride=3, padding=1, ceil_mode=true)"),
    _pool_row("maxpool2d-ceil-overhang2", "maxpool2d", (2, 1, 9, 9), "maxpool2d(4, stride=3, padding=1, ceil_mode=true)"),
    _pool_row("maxpool1d-ceil-drops-last", "maxpool1d", (2, 2, 4), "maxpool1d(2, stride=3, padding=1, ceil_mode=true)"),
    _pool_row("maxpool1d-ceil-window-past-input", "maxpool1d", (2, 2, 3), "maxpool1d(4, stride=2, ceil_mode=true)"),
    _pool_row("avgpool1d", "avgpool1d", (2, 3, 9), "avgpool1d(2)"),
    _pool_row("avgpool1d-overlap-pad", "avgpool1d", (2, 3, 9), "avgpool1d(3, stride=1, padding=1)"),
    _pool_row("avgpool1d-ceil-pad", "avgpool1d", (2, 2, 9), "avgpool1d(4, stride=3, padding=1, ceil_mode=true)"),
    _pool_row("avgpool2d-ceil-overhang2", "avgpool2d", (2, 1, 9, 9), "avgpool2d(4, stride=3, padding=1, ceil_mode=true)"),
    _pool_row("avgpool1d-ceil-drops-last", "avgpool1d", (2, 2, 4), "avgpool1d(2, stride=3, padding=1, ceil_mode=true)"),
    _pool_row("avgpool1d-ceil-window-past-input", "avgpool1d", (2, 2, 3), "avgpool1d(4, stride=2, ceil_mode=true)"),
    ("globalmaxpool2d", "globalmaxpool2d", {}, [(2, 3, 4, 5)], {},
     lambda x, w, a: F.adaptive_max_pool2d(x, 1)[:, :, 0, 0]),
    ("globalmaxpool1d", "globalmaxpool1d", {}, [(2, 3, 7)], {},
     lambda x, w, a: F.adaptive_max_pool1d(x, 1)[:, :, 0]),
    ("globalavgpool1d", "globalavgpool1d", {}, [(2, 3, 7)], {}, lambda x, w, a: x.mean(dim=2)),
    ("mean-axis0", "mean", _compiled((4, 5), "mean(0)"), [(3, 4, 5)], {}, lambda x, w, a: x.mean(dim=1)),
    ("mean-axis-1", "mean", _compiled((3, 4, 5), "mean(-1)"), [(2, 3, 4, 5)], {},
     lambda x, w, a: x.mean(dim=-1)),
    ("sum-axis0", "sum", _compiled((4, 5), "sum(0)"), [(3, 4, 5)], {}, lambda x, w, a: x.sum(dim=1)),
    ("sum-axis-2", "sum", _compiled((3, 4, 5), "sum(-2)"), [(2, 3, 4, 5)], {}, lambda x, w, a: x.sum(dim=-2)),
    ("max-amax", "max", _compiled((3, 4, 5), "max(1)"), [(2, 3, 4, 5)], {},
     lambda x, w, a: torch.amax(x, dim=2)),
    # with ties: torch.max(x, dim) sends the gradient to the first maximum, as nnc does (amax splits it)
    ("max-axis-1-ties", "max", _compiled((3, 6), "max(-1)"), [(4, 3, 6)], {},
     lambda x, w, a: torch.max(x, dim=-1).values),
    ("max-axis0-ties", "max", _compiled((6, 3), "max(0)"), [(4, 6, 3)], {},
     lambda x, w, a: torch.max(x, dim=1).values),
    ("transpose-rank2", "transpose", _compiled((3, 4), "transpose([1, 0])"), [(2, 3, 4)], {},
     lambda x, w, a: x.permute(0, 2, 1)),
    ("transpose-rank3", "transpose", _compiled((3, 4, 5), "transpose([2, 0, -2])"), [(2, 3, 4, 5)], {},
     lambda x, w, a: x.permute(0, 3, 1, 2)),
    ("select-last", "select", _compiled((4, 5), "select(0, -1)"), [(3, 4, 5)], {},
     lambda x, w, a: x.select(1, -1)),
    ("select-rank3", "select", _compiled((3, 4, 5), "select(-1, 2)"), [(2, 3, 4, 5)], {},
     lambda x, w, a: x.select(3, 2)),
    ("slice-narrow", "slice", _compiled((6, 5), "slice(0, 1, 4)"), [(3, 6, 5)], {},
     lambda x, w, a: x.narrow(1, 1, 3)),
    ("slice-negative-clamped", "slice", _compiled((3, 4, 5), "slice(-1, -3, 100)"), [(2, 3, 4, 5)], {},
     lambda x, w, a: x[..., -3:100]),
    ("slice-negative-end", "slice", _compiled((3, 4, 5), "slice(1, -100, -1)"), [(2, 3, 4, 5)], {},
     lambda x, w, a: x[:, :, -100:-1]),
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


TIES = {"maxpool2d", "maxpool1d", "globalmaxpool2d", "globalmaxpool1d"}   # first-maximum tie rule, as torch


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_matches_torch(row):
    label, op, a, shapes, wshapes, tfn = row
    rng = np.random.default_rng(0)
    xs = [8 * rng.standard_normal(s) if op in ("softplus", "gelu", "elu", "selu", "relu6", "hardsigmoid",
                                                "hardswish", "clip")
          else rng.standard_normal(s) for s in shapes]
    if op in TIES or label.endswith("-ties"):       # include ties: integer-valued inputs
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
