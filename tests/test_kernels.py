"""The NumPy kernels: gradient checks for every op, forward checks against independent references.

Gradients: float64 central differences (eps = 1e-6) of the scalar loss sum(y * R), random R, w.r.t.
every float input and every trainable weight, driven by the CASES table below. Inputs are kept away
from kinks (relu & co. get |x| >= 0.1, maxpool gets distinct values).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from nnc.errors import NncError
from nnc.runtime.kernels import KERNELS, Ctx, erf, erfc

from nnc.compiler.ops import OPS

# NOTE: derived from the catalogue, so a new op without a kernel or a gradient case fails here
ALL_OPS = tuple(OPS)


# ----------------------------------------------------------------------------------------------
# the case table

@dataclass
class Case:
    """One kernel call: inputs are (kind, shape) with kind normal | away | distinct | wide | ids;
    weights are name -> shape; ``trainable`` names the weights that get gradients."""

    id: str
    op: str
    a: dict
    inputs: list
    weights: dict = field(default_factory=dict)
    trainable: tuple = ()
    training: bool = False
    vocab: int = 0

    def make(self, seed: int = 0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        xs = []
        for kind, shape in self.inputs:
            if kind == "ids":
                ids = rng.integers(0, self.vocab, size=shape)
                ids.flat[:2] = ids.flat[2]          # make sure some id repeats
                xs.append(ids.astype(np.int64))
                continue
            if kind == "normal":
                x = rng.standard_normal(shape)
            elif kind == "wide":
                x = 3 * rng.standard_normal(shape)
            elif kind == "away":                     # |x| in [0.1, 2]: no kink within eps
                x = rng.uniform(0.1, 2, shape) * rng.choice([-1.0, 1.0], shape)
            elif kind == "distinct":                 # all values >= 0.05 apart: no max ties
                x = (rng.permutation(int(np.prod(shape))).reshape(shape) - 20) * 0.05
            else:
                raise ValueError(kind)
            xs.append(x.astype(dtype))
        w = {}
        for name, shape in self.weights.items():
            if name in ("running_var", "var"):
                w[name] = rng.uniform(0.5, 2.0, shape).astype(dtype)
            else:
                w[name] = (0.5 * rng.standard_normal(shape)).astype(dtype)
        return xs, w


def _conv_weights(f, c, k, bias=True):
    w = {"weight": (f, c, *k)}
    if bias:
        w["bias"] = (f,)
    return w, tuple(w)


def conv2d(id, n, c, h, wd, f, k, stride=(1, 1), dilation=(1, 1), pads=(0, 0, 0, 0), bias=True, groups=1):
    weights, trainable = _conv_weights(f, c // groups, k, bias)
    a = dict(filters=f, kernel=list(k), stride=list(stride), dilation=list(dilation),
             pads=list(pads), groups=groups, bias=bias, init="glorot_uniform")
    return Case(id, "conv2d", a, [("normal", (n, c, h, wd))], weights, trainable)


def conv1d(id, n, c, length, f, k, stride=1, dilation=1, pads=(0, 0), bias=True, groups=1):
    weights, trainable = _conv_weights(f, c // groups, (k,), bias)
    a = dict(filters=f, kernel=[k], stride=[stride], dilation=[dilation], pads=list(pads),
             groups=groups, bias=bias, init="glorot_uniform")
    return Case(id, "conv1d", a, [("normal", (n, c, length))], weights, trainable)


def conv2d_transpose(id, n, c, h, wd, f, k, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
                     dilation=(1, 1), groups=1, bias=True):
    weights = {"weight": (c, f // groups, *k), **({"bias": (f,)} if bias else {})}
    a = dict(filters=f, kernel=list(k), stride=list(stride), padding=list(padding),
             output_padding=list(output_padding), dilation=list(dilation), groups=groups,
             pads=list(padding) * 2, bias=bias, init="glorot_uniform")
    return Case(id, "conv2d_transpose", a, [("normal", (n, c, h, wd))], weights, tuple(weights))


def upsample2d(id, shape, scale, mode):
    return Case(id, "upsample2d", dict(scale=list(scale), mode=mode), [("normal", shape)])


def pool(op, id, shape, size, stride, pads=(0, 0, 0, 0)):
    kind = "distinct" if op == "maxpool2d" else "normal"
    return Case(id, op, dict(size=list(size), stride=list(stride), pads=list(pads), overhang=[0, 0]),
                [(kind, shape)])


def compiled(op, id, shape, stage, kind="normal"):
    """A case whose attrs are the compiler's: ``stage`` (e.g. ``maxpool1d(3, ceil_mode=true)``)
    lowered on an input of the per-example shape ``shape[1:]`` (defaults, derived attrs such as
    ``pads``/``overhang`` and normalised axes set by the catalogue's shape rule)."""
    from nnc.compiler.lower import compile_source
    dims = ", ".join(str(d) for d in shape[1:])
    program = compile_source(f"model m {{\n    input x: [{dims}]\n    {stage}\n}}\n", "m.nnspec")
    (node,) = program.model.nodes
    assert node.op == op
    return Case(id, op, dict(node.attrs), [(kind, shape)])


def dense(id, xshape, units, bias=True):
    weights = {"weight": (units, xshape[-1])}
    if bias:
        weights["bias"] = (units,)
    return Case(id, "dense", dict(units=units, bias=bias, init="glorot_uniform"),
                [("normal", xshape)], weights, tuple(weights))


def recurrent(op, id, n, t, f, u, seq, activation=None, bidirectional=False, layers=1, dropout=0.0,
              training=False):
    # NOTE: recurrent layers always have both biases (the contract defines no `bias` switch for them)
    from nnc.compiler.ops import _rnn_suffixes
    g = {"rnn": 1, "lstm": 4, "gru": 3}[op]
    a = dict(units=u, return_sequences=seq, bidirectional=bidirectional, layers=layers, dropout=dropout,
             init="glorot_uniform", recurrent_init="orthogonal")
    if op == "rnn":
        a["activation"] = activation
    a["suffixes"] = _rnn_suffixes(a)
    weights = {}
    for k, suffixes in enumerate(a["suffixes"]):
        fk = f if k == 0 else len(suffixes) * u
        for s in suffixes:
            weights.update({f"weight_ih{s}": (g * u, fk), f"weight_hh{s}": (g * u, u),
                            f"bias_ih{s}": (g * u,), f"bias_hh{s}": (g * u,)})
    return Case(id, op, a, [("normal", (n, t, f))], weights, tuple(weights), training=training)


def batchnorm(id, shape, training):
    c = shape[1]
    return Case(id, "batchnorm", dict(momentum=0.9, eps=1e-5), [("normal", shape)],
                dict(weight=(c,), bias=(c,), running_mean=(c,), running_var=(c,)),
                ("weight", "bias"), training=training)


def unary(op, xshape=(3, 4, 5), kind="normal", id=None, **a):
    return Case(id or op, op, a, [(kind, xshape)])


def mha(id, n, tq, e, heads, tk=None, causal=False, dropout=0.0, bias=True, training=False):
    """multihead_attention: self-attention on (n, tq, e), or cross-attention with a kv (n, tk, e)."""
    weights = {"in_proj_weight": (3 * e, e), "in_proj_bias": (3 * e,), "out_proj.weight": (e, e),
               "out_proj.bias": (e,)}
    if not bias:
        weights = {k: v for k, v in weights.items() if "bias" not in k}
    inputs = [("normal", (n, tq, e))] + ([("normal", (n, tk, e))] if tk else [])
    a = dict(heads=heads, causal=causal, dropout=dropout, bias=bias, head_dim=e // heads)
    return Case(id, "multihead_attention", a, inputs, weights, tuple(weights), training=training)


CASES = [
    dense("rank2", (4, 5), 3),
    dense("rank3", (2, 3, 4), 5),
    dense("rank2-nobias", (3, 4), 2, bias=False),
    conv2d("3x3", 2, 2, 5, 6, 3, (3, 3)),
    conv2d("stride2-asympads", 2, 2, 6, 7, 3, (3, 2), stride=(2, 2), pads=(1, 0, 2, 1)),
    conv2d("dilation2-pads", 2, 3, 7, 6, 2, (2, 3), dilation=(2, 2), pads=(1, 2, 1, 2)),
    conv2d("mixed-nobias", 1, 2, 7, 8, 3, (3, 2), stride=(2, 1), dilation=(1, 2),
           pads=(0, 1, 1, 0), bias=False),
    conv2d("1x1", 3, 4, 3, 3, 2, (1, 1)),
    conv2d("stride3-gaps", 2, 2, 8, 7, 2, (2, 2), stride=(3, 3)),
    conv1d("k3", 2, 3, 8, 4, 3),
    conv1d("stride2-dil2-pads", 2, 2, 9, 3, 3, stride=2, dilation=2, pads=(2, 1)),
    conv1d("nobias", 3, 2, 6, 2, 2, pads=(1, 0), bias=False),
    conv2d("groups2", 2, 4, 5, 6, 6, (3, 3), groups=2),
    conv2d("groups2-stride2-pads", 2, 4, 7, 6, 4, (3, 2), stride=(2, 2), pads=(1, 0, 2, 1), groups=2),
    conv2d("depthwise-same", 2, 3, 5, 5, 3, (3, 3), pads=(1, 1, 1, 1), groups=3),
    conv2d("depthwise-x2-dilation-nobias", 2, 3, 6, 7, 6, (2, 2), stride=(2, 1), dilation=(1, 2),
           groups=3, bias=False),
    conv1d("groups2", 2, 4, 8, 6, 3, groups=2),
    conv1d("depthwise-stride2-pads", 2, 3, 9, 3, 3, stride=2, pads=(1, 1), groups=3),
    conv2d_transpose("3x3", 2, 2, 3, 4, 3, (3, 3)),
    conv2d_transpose("stride2", 2, 3, 3, 3, 2, (2, 2), stride=(2, 2)),
    conv2d_transpose("stride2-pad1-outpad1", 2, 2, 3, 4, 3, (3, 3), stride=(2, 2), padding=(1, 1),
                     output_padding=(1, 1)),
    conv2d_transpose("rect-stride-dilation", 1, 2, 3, 3, 2, (2, 3), stride=(3, 1), padding=(0, 1),
                     output_padding=(2, 0), dilation=(1, 2)),
    conv2d_transpose("outpad-below-dilation", 2, 2, 3, 3, 2, (2, 2), dilation=(2, 2), output_padding=(1, 1)),
    conv2d_transpose("groups2-nobias", 2, 4, 3, 3, 6, (3, 2), stride=(2, 2), groups=2, bias=False),
    conv2d_transpose("depthwise", 2, 3, 3, 4, 3, (3, 3), stride=(2, 1), padding=(1, 1), groups=3),
    upsample2d("nearest-2x3", (2, 2, 3, 4), (2, 3), "nearest"),
    upsample2d("nearest-1x2", (2, 3, 2, 3), (1, 2), "nearest"),
    upsample2d("bilinear-2x3", (2, 2, 3, 4), (2, 3), "bilinear"),
    upsample2d("bilinear-3x1", (2, 2, 4, 3), (3, 1), "bilinear"),
    upsample2d("bilinear-4x2-edge", (1, 2, 1, 3), (4, 2), "bilinear"),
    pool("maxpool2d", "2x2", (2, 2, 4, 6), (2, 2), (2, 2)),
    pool("maxpool2d", "3x3-s2-pad1", (2, 2, 5, 6), (3, 3), (2, 2), (1, 1, 1, 1)),
    pool("maxpool2d", "2x3-s12-asym", (1, 3, 5, 5), (2, 3), (1, 2), (1, 0, 0, 1)),
    pool("maxpool2d", "2x2-s3-gaps", (2, 2, 7, 8), (2, 2), (3, 3)),
    pool("avgpool2d", "2x2", (2, 2, 4, 6), (2, 2), (2, 2)),
    pool("avgpool2d", "2x2-s3-gaps", (2, 2, 7, 8), (2, 2), (3, 3)),
    pool("avgpool2d", "3x3-s2-pad1", (2, 2, 5, 6), (3, 3), (2, 2), (1, 1, 1, 1)),
    pool("avgpool2d", "2x3-s12-asym", (1, 3, 5, 5), (2, 3), (1, 2), (1, 0, 0, 1)),
    unary("globalavgpool2d", (2, 3, 4, 5)),
    # pooling, reductions and axis ops (issue 10): attrs as the compiler derives them
    compiled("maxpool2d", "ceil", (2, 2, 5, 7), "maxpool2d(2, ceil_mode=true)", "distinct"),
    compiled("maxpool2d", "ceil-rect-pad", (1, 2, 8, 7), "maxpool2d([3, 2], stride=[2, 3], padding=1, "
             "ceil_mode=true)", "distinct"),
    compiled("maxpool2d", "ceil-drops-last", (2, 1, 4, 6), "maxpool2d(2, stride=3, padding=1, ceil_mode=true)",
             "distinct"),
    compiled("avgpool2d", "ceil", (2, 2, 5, 7), "avgpool2d(2, ceil_mode=true)"),
    compiled("avgpool2d", "ceil-rect-pad", (1, 2, 8, 7), "avgpool2d([3, 2], stride=[2, 3], padding=1, "
             "ceil_mode=true)"),
    compiled("avgpool2d", "ceil-drops-last", (2, 1, 4, 6), "avgpool2d(2, stride=3, padding=1, ceil_mode=true)"),
    compiled("avgpool2d", "ceil-overlap", (1, 2, 6, 6), "avgpool2d(3, stride=2, padding=1, ceil_mode=true)"),
    compiled("maxpool1d", "2", (2, 3, 8), "maxpool1d(2)", "distinct"),
    compiled("maxpool1d", "3-s1-pad1", (2, 2, 7), "maxpool1d(3, stride=1, padding=1)", "distinct"),
    compiled("maxpool1d", "ceil-pad", (2, 2, 9), "maxpool1d(4, stride=3, padding=1, ceil_mode=true)", "distinct"),
    compiled("maxpool1d", "ceil-drops-last", (2, 2, 4), "maxpool1d(2, stride=3, padding=1, ceil_mode=true)",
             "distinct"),
    compiled("maxpool1d", "ceil-window-past-input", (2, 2, 3), "maxpool1d(4, stride=2, ceil_mode=true)",
             "distinct"),
    compiled("avgpool1d", "2", (2, 3, 8), "avgpool1d(2)"),
    compiled("avgpool1d", "3-s1-pad1", (2, 2, 7), "avgpool1d(3, stride=1, padding=1)"),
    compiled("avgpool1d", "ceil-pad", (2, 2, 9), "avgpool1d(4, stride=3, padding=1, ceil_mode=true)"),
    compiled("avgpool1d", "ceil-drops-last", (2, 2, 4), "avgpool1d(2, stride=3, padding=1, ceil_mode=true)"),
    compiled("avgpool1d", "ceil-window-past-input", (2, 2, 3), "avgpool1d(4, stride=2, ceil_mode=true)"),
    compiled("globalmaxpool2d", "globalmaxpool2d", (2, 3, 4, 5), "globalmaxpool2d", "distinct"),
    compiled("globalmaxpool1d", "globalmaxpool1d", (2, 3, 7), "globalmaxpool1d", "distinct"),
    compiled("globalavgpool1d", "globalavgpool1d", (2, 3, 7), "globalavgpool1d"),
    compiled("mean", "axis0", (3, 4, 5), "mean(0)"),
    compiled("mean", "axis-1-rank3", (2, 3, 4, 5), "mean(-1)"),
    compiled("mean", "axis1-rank3", (2, 3, 4, 5), "mean(1)"),
    compiled("sum", "axis0", (3, 4, 5), "sum(0)"),
    compiled("sum", "axis-2-rank3", (2, 3, 4, 5), "sum(-2)"),
    compiled("max", "axis0", (3, 4, 5), "max(0)", "distinct"),
    compiled("max", "axis-1-rank3", (2, 3, 4, 5), "max(-1)", "distinct"),
    compiled("max", "axis1-rank3", (2, 3, 4, 5), "max(1)", "distinct"),
    compiled("transpose", "rank2", (2, 3, 4), "transpose([1, 0])"),
    compiled("transpose", "rank3", (2, 3, 4, 5), "transpose([2, 0, 1])"),
    compiled("transpose", "rank3-negative", (2, 3, 4, 5), "transpose([-1, -2, 0])"),
    compiled("select", "last", (3, 4, 5), "select(0, -1)"),
    compiled("select", "axis-1-rank3", (2, 3, 4, 5), "select(-1, 2)"),
    compiled("select", "axis1", (2, 3, 4, 5), "select(1, 0)"),
    compiled("slice", "middle", (3, 6, 5), "slice(0, 1, 4)"),
    compiled("slice", "negative-clamped", (2, 3, 4, 5), "slice(-1, -3, 100)"),
    compiled("slice", "axis1-from-start", (2, 3, 4, 5), "slice(1, -100, -1)"),
    unary("flatten", (2, 3, 4, 2)),
    unary("reshape", (3, 12), id="rank2", shape=[3, 4]),
    unary("reshape", (2, 2, 3, 4), id="rank4", shape=[6, 4]),
    unary("dropout", (4, 6), id="eval", rate=0.5),
    Case("train", "dropout", dict(rate=0.3), [("normal", (5, 7))], training=True),
    Case("train-rate0", "dropout", dict(rate=0.0), [("normal", (3, 4))], training=True),
    batchnorm("NC-train", (6, 3), True),
    batchnorm("NCL-train", (3, 2, 5), True),
    batchnorm("NCHW-train", (2, 3, 3, 4), True),
    batchnorm("NCHW-eval", (2, 3, 3, 4), False),
    Case("ND", "layernorm", dict(eps=1e-5), [("normal", (4, 6))],
         dict(weight=(6,), bias=(6,)), ("weight", "bias")),
    Case("NTD", "layernorm", dict(eps=1e-5), [("normal", (2, 3, 5))],
         dict(weight=(5,), bias=(5,)), ("weight", "bias")),
    Case("embedding", "embedding", dict(vocab=7, dim=3, init="uniform"), [("ids", (3, 5))],
         dict(weight=(7, 3)), ("weight",), vocab=7),
    recurrent("rnn", "tanh-last", 3, 4, 3, 5, False, "tanh"),
    recurrent("rnn", "tanh-seq", 2, 5, 4, 3, True, "tanh"),
    recurrent("rnn", "relu-seq", 3, 4, 3, 4, True, "relu"),
    recurrent("rnn", "relu-last", 2, 3, 2, 3, False, "relu"),
    recurrent("lstm", "last", 3, 4, 3, 4, False),
    recurrent("lstm", "seq", 2, 5, 2, 3, True),
    recurrent("gru", "last", 3, 4, 3, 4, False),
    recurrent("gru", "seq", 2, 5, 2, 3, True),
    recurrent("gru", "seq-small", 2, 3, 3, 2, True),
    # bidirectional, stacked (layers k > 0 read D*units features), dropout between layers
    recurrent("rnn", "bi-last", 2, 4, 3, 3, False, "tanh", bidirectional=True),
    recurrent("rnn", "bi-seq", 2, 4, 3, 3, True, "relu", bidirectional=True),
    recurrent("rnn", "l2-seq", 2, 4, 2, 3, True, "relu", layers=2),
    recurrent("rnn", "l2-last", 2, 3, 2, 3, False, "tanh", layers=2),
    recurrent("rnn", "bi-l2-seq", 2, 3, 2, 2, True, "tanh", bidirectional=True, layers=2),
    recurrent("rnn", "bi-l2-last", 2, 3, 2, 2, False, "relu", bidirectional=True, layers=2),
    recurrent("rnn", "bi-l3-dropout-train", 2, 3, 2, 2, True, "tanh", bidirectional=True, layers=3,
              dropout=0.4, training=True),
    recurrent("lstm", "bi-last", 2, 4, 3, 3, False, bidirectional=True),
    recurrent("lstm", "bi-seq", 2, 4, 2, 2, True, bidirectional=True),
    recurrent("lstm", "l2-last", 2, 4, 3, 2, False, layers=2),
    recurrent("lstm", "l2-seq", 2, 3, 2, 3, True, layers=2),
    recurrent("lstm", "bi-l2-seq", 2, 3, 2, 2, True, bidirectional=True, layers=2),
    recurrent("lstm", "bi-l2-last", 2, 3, 3, 2, False, bidirectional=True, layers=2),
    recurrent("lstm", "l2-dropout-train", 3, 3, 2, 3, True, layers=2, dropout=0.5, training=True),
    recurrent("lstm", "bi-l2-dropout-train-last", 2, 3, 2, 2, False, bidirectional=True, layers=2,
              dropout=0.3, training=True),
    recurrent("lstm", "bi-l2-dropout-eval", 2, 3, 2, 2, True, bidirectional=True, layers=2, dropout=0.3),
    recurrent("gru", "bi-last", 2, 4, 3, 3, False, bidirectional=True),
    recurrent("gru", "bi-seq", 2, 4, 2, 2, True, bidirectional=True),
    recurrent("gru", "l2-last", 2, 4, 3, 2, False, layers=2),
    recurrent("gru", "l2-seq", 2, 3, 2, 3, True, layers=2),
    recurrent("gru", "bi-l2-seq", 2, 3, 2, 2, True, bidirectional=True, layers=2),
    recurrent("gru", "bi-l2-last", 2, 3, 3, 2, False, bidirectional=True, layers=2),
    recurrent("gru", "l2-dropout-train", 3, 3, 2, 3, True, layers=2, dropout=0.5, training=True),
    recurrent("gru", "bi-l2-dropout-train-last", 2, 3, 2, 2, False, bidirectional=True, layers=2,
              dropout=0.3, training=True),
    Case("2", "add", {}, [("normal", (3, 4))] * 2),
    Case("3", "add", {}, [("normal", (2, 3, 2))] * 3),
    Case("2", "multiply", {}, [("normal", (3, 4))] * 2),
    Case("3", "multiply", {}, [("normal", (2, 3, 2))] * 3),
    # broadcasting: per-example axes aligned from the right, size-1 and missing axes broadcast
    Case("broadcast-C11", "add", {}, [("normal", (2, 3, 4, 5)), ("normal", (2, 3, 1, 1))]),
    Case("broadcast-rank1", "add", {}, [("normal", (2, 3, 4, 5)), ("normal", (2, 5))]),
    Case("broadcast-both", "add", {}, [("normal", (2, 1, 4)), ("normal", (2, 3, 1))]),
    Case("broadcast-3", "add", {}, [("normal", (2, 3, 4)), ("normal", (2, 4)), ("normal", (2, 3, 1))]),
    Case("broadcast-C11", "multiply", {}, [("normal", (2, 3, 4, 5)), ("normal", (2, 3, 1, 1))]),
    Case("broadcast-rank1", "multiply", {}, [("normal", (2, 3, 4)), ("normal", (2, 4))]),
    Case("broadcast-3", "multiply", {}, [("normal", (2, 1, 4)), ("normal", (2, 3, 1)), ("normal", (2, 4))]),
    Case("axis0", "concat", dict(axis=0), [("normal", (2, 2, 3)), ("normal", (2, 4, 3))]),
    Case("axis1-3in", "concat", dict(axis=1),
         [("normal", (2, 3, 1)), ("normal", (2, 3, 2)), ("normal", (2, 3, 4))]),
    Case("axis2-4d", "concat", dict(axis=2), [("normal", (2, 2, 3, 2)), ("normal", (2, 2, 3, 1))]),
    unary("identity"),
    unary("linear"),
    unary("relu", kind="away"),
    unary("sigmoid", kind="wide"),
    unary("tanh", kind="wide"),
    unary("softmax", (4, 5), id="axis0", axis=0),
    unary("softmax", (2, 3, 4), id="axis1", axis=1),
    unary("log_softmax", (4, 5), id="axis0", axis=0),
    unary("log_softmax", (2, 3, 4), id="axis1", axis=1),
    unary("leaky_relu", kind="away", alpha=0.1),
    unary("elu", kind="away", id="alpha1", alpha=1.0),
    unary("elu", kind="away", id="alpha0.5", alpha=0.5),
    unary("selu", kind="away"),
    unary("gelu", kind="wide"),
    unary("softplus", kind="wide"),
    unary("silu", kind="wide"),
    unary("step", kind="away"),
    unary("relu6", (4, 5, 6), kind="wide"),
    unary("hardsigmoid", (4, 5, 6), kind="wide"),
    unary("hardswish", (4, 5, 6), kind="wide"),
    unary("clip", (4, 5, 6), kind="wide", min=-1.0, max=2.0),
    unary("clip", (3, 4), kind="wide", id="equal-bounds", min=0.5, max=0.5),
    # attention, positional encodings, normalize
    mha("self", 2, 4, 6, 2),
    mha("self-1head", 3, 3, 4, 1),
    mha("self-nobias", 2, 4, 6, 3, bias=False),
    mha("causal", 2, 5, 4, 2, causal=True),
    mha("causal-nobias", 2, 4, 6, 3, causal=True, bias=False),
    mha("cross", 2, 3, 6, 3, tk=5),
    mha("cross-nobias", 2, 4, 4, 2, tk=2, bias=False),
    mha("dropout-train", 2, 4, 6, 2, dropout=0.3, training=True),
    mha("dropout-train-causal", 2, 4, 4, 2, causal=True, dropout=0.5, training=True),
    mha("dropout-train-cross", 2, 3, 4, 2, tk=5, dropout=0.25, training=True),
    mha("dropout-eval", 2, 4, 6, 2, dropout=0.5),
    Case("positional_embedding", "positional_embedding", dict(init={"kind": "normal", "mean": 0.0, "std": 0.02}),
         [("normal", (3, 4, 5))], dict(weight=(4, 5)), ("weight",)),
    Case("even", "positional_encoding", {}, [("normal", (2, 5, 6))]),
    Case("odd", "positional_encoding", {}, [("normal", (2, 4, 5))]),
    Case("last", "normalize", dict(axis=1, eps=1e-5), [("normal", (3, 4, 5))], dict(mean=(5,), var=(5,))),
    Case("axis0", "normalize", dict(axis=0, eps=1e-3), [("normal", (3, 4, 5))], dict(mean=(4,), var=(4,))),
    Case("features", "normalize", dict(axis=0, eps=1e-5), [("normal", (4, 6))], dict(mean=(6,), var=(6,))),
]

# step's derivative is 0 almost everywhere, but its backward is straight-through by design:
# the numerical check does not apply; test_step_* below check it.
# ops whose backward is not the derivative of their forward, each with the test that checks it instead
NO_GRADIENT_CHECK = {"step": "straight-through: test_step_forward_and_straight_through_backward"}
GRAD_CASES = [c for c in CASES if c.op not in NO_GRADIENT_CHECK]


def _id(c: Case) -> str:
    return c.op if c.id == c.op else f"{c.op}-{c.id}"


# ----------------------------------------------------------------------------------------------
# gradient checks

def _forward(case, xs, w, seed=1):
    """One forward on copies of the weights (state updates must not leak between calls). The
    dropout rng is re-seeded per call so every call draws the same mask."""
    ctx = Ctx(training=case.training, rng=np.random.default_rng(seed))
    return KERNELS[case.op].forward(xs, {k: v.copy() for k, v in w.items()}, case.a, ctx)


def _numeric_grad(loss, arr, eps=1e-6):
    g = np.zeros_like(arr)
    flat = arr.reshape(-1)            # a view: writing it perturbs arr
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        lp = loss()
        flat[i] = orig - eps
        lm = loss()
        flat[i] = orig
        g.reshape(-1)[i] = (lp - lm) / (2 * eps)
    return g


@pytest.mark.parametrize("case", GRAD_CASES, ids=_id)
def test_gradients(case):
    xs, w = case.make(seed=0)
    y, cache = _forward(case, xs, w)
    R = np.random.default_rng(99).standard_normal(y.shape)
    dxs, dw = KERNELS[case.op].backward(R.copy(), cache)
    label = _id(case)

    assert len(dxs) == len(xs), f"{label}: backward returns one gradient per input"
    assert set(dw) == set(case.trainable), f"{label}: backward's weight grads {sorted(dw)}"

    def loss():
        return float(np.sum(_forward(case, xs, w)[0] * R))

    for i, x in enumerate(xs):
        if x.dtype.kind in "iu":
            assert dxs[i] is None, f"{label}: integer input {i} gets no gradient"
            continue
        assert dxs[i].shape == x.shape, f"{label}: shape of the gradient of input {i}"
        np.testing.assert_allclose(dxs[i], _numeric_grad(loss, x), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{label}: backward of input {i}")
    for name in case.trainable:
        assert dw[name].shape == w[name].shape, f"{label}: shape of the gradient of {name}"
        np.testing.assert_allclose(dw[name], _numeric_grad(loss, w[name]), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{label}: backward of {name}")


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_float32_in_float32_out(case):
    xs, w = case.make(seed=0, dtype=np.float32)
    y, cache = _forward(case, xs, w)
    assert y.dtype == np.float32, f"{_id(case)}: forward gives {y.dtype}"
    dxs, dw = KERNELS[case.op].backward(np.ones_like(y), cache)
    for i, g in enumerate(dxs):
        assert g is None or g.dtype == np.float32, f"{_id(case)}: grad of input {i} is {g.dtype}"
    for name, g in dw.items():
        assert g.dtype == np.float32, f"{_id(case)}: grad of {name} is {g.dtype}"


def test_every_op_has_a_kernel():
    missing = [op for op in ALL_OPS if op not in KERNELS]
    assert not missing, f"ops without a kernel: {missing}"
    untested = set(ALL_OPS) - {c.op for c in CASES}
    assert not untested, f"ops missing from the case table: {untested}"
    no_gradient = set(ALL_OPS) - {c.op for c in GRAD_CASES} - set(NO_GRADIENT_CHECK)
    assert not no_gradient, f"ops without a gradient check: {no_gradient}"


# ----------------------------------------------------------------------------------------------
# forward references: convolution and pooling as naive loops

def naive_conv2d(x, weight, bias, stride, dilation, pads, groups=1):
    N, C, H, W = x.shape
    F, Cg, kh, kw = weight.shape
    Fg = F // groups
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = stride, dilation, pads
    xp = np.zeros((N, C, H + pt + pb, W + pl + pr))
    xp[:, :, pt:pt + H, pl:pl + W] = x
    Ho = (H + pt + pb - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + pl + pr - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((N, F, Ho, Wo))
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    s = 0.0
                    g = f // Fg                     # filter f sees the input channels of its group
                    for c in range(Cg):
                        for p in range(kh):
                            for q in range(kw):
                                s += xp[n, g * Cg + c, i * sh + p * dh, j * sw + q * dw] * weight[f, c, p, q]
                    y[n, f, i, j] = s + (bias[f] if bias is not None else 0.0)
    return y


def naive_pool(x, size, stride, pads, kind, ceil=False):
    """PyTorch's pooling written out: output sizes by its rule (ceil: round up, but the last window
    must start inside the input or the top/left padding); each window clipped to the padded input,
    and avg divides by the clipped window's size (count_include_pad=True)."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = size, stride, pads
    fill = -np.inf if kind == "max" else 0.0
    Hp, Wp = H + pt + pb, W + pl + pr
    xp = np.full((N, C, Hp, Wp), fill)
    xp[:, :, pt:pt + H, pl:pl + W] = x

    def out_size(n, padded, k, s, begin):
        out = (padded - k + (s - 1 if ceil else 0)) // s + 1
        return out - 1 if ceil and (out - 1) * s >= n + begin else out

    Ho, Wo = out_size(H, Hp, kh, sh, pt), out_size(W, Wp, kw, sw, pl)
    y = np.zeros((N, C, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            h0, w0 = i * sh, j * sw
            h1, w1 = min(h0 + kh, Hp), min(w0 + kw, Wp)
            win = xp[:, :, h0:h1, w0:w1]
            y[:, :, i, j] = win.max(axis=(2, 3)) if kind == "max" else win.sum(axis=(2, 3)) / ((h1 - h0) * (w1 - w0))
    return y


@pytest.mark.parametrize("case", [c for c in CASES if c.op == "conv2d"], ids=_id)
def test_conv2d_forward_matches_naive_loop(case):
    xs, w = case.make(seed=3)
    y, _ = _forward(case, xs, w)
    ref = naive_conv2d(xs[0], w["weight"], w.get("bias"), case.a["stride"], case.a["dilation"],
                       case.a["pads"], case.a["groups"])
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12, err_msg=f"{_id(case)}: forward")


@pytest.mark.parametrize("case", [c for c in CASES if c.op == "conv1d"], ids=_id)
def test_conv1d_forward_matches_naive_loop(case):
    xs, w = case.make(seed=3)
    y, _ = _forward(case, xs, w)
    (s,), (d,), (pl, pr) = case.a["stride"], case.a["dilation"], case.a["pads"]
    ref = naive_conv2d(xs[0][:, :, None, :], w["weight"][:, :, None, :], w.get("bias"),
                       (1, s), (1, d), (0, pl, 0, pr), case.a["groups"])[:, :, 0, :]
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12, err_msg=f"{_id(case)}: forward")


@pytest.mark.parametrize("case", [c for c in CASES if c.op in ("maxpool2d", "avgpool2d", "maxpool1d", "avgpool1d")],
                         ids=_id)
def test_pool_forward_matches_naive_loop(case):
    xs, _ = case.make(seed=3)
    x = np.random.default_rng(4).standard_normal(xs[0].shape)
    y, _ = _forward(case, [x], {})
    a, ceil = case.a, case.a.get("ceil_mode", False)
    if case.op.endswith("1d"):
        (pl, pr) = a["pads"]
        ref = naive_pool(x[:, :, None, :], (1, *a["size"]), (1, *a["stride"]), (0, pl, 0, pr), case.op[:3],
                         ceil)[:, :, 0, :]
    else:
        ref = naive_pool(x, a["size"], a["stride"], a["pads"], case.op[:3], ceil)
    assert y.shape == ref.shape, f"{_id(case)}: shape"
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12, err_msg=f"{_id(case)}: forward")


def test_maxpool_ties_send_gradient_to_first_max():
    x = np.ones((1, 1, 2, 4))
    x[0, 0, 1, 3] = 0.0
    a = dict(size=[2, 2], stride=[2, 2], pads=[0, 0, 0, 0], overhang=[0, 0])
    y, cache = KERNELS["maxpool2d"].forward([x], {}, a, Ctx())
    (dx,), _ = KERNELS["maxpool2d"].backward(np.array([[[[2.0, 3.0]]]]), cache)
    expected = np.zeros_like(x)
    expected[0, 0, 0, 0] = 2.0
    expected[0, 0, 0, 2] = 3.0
    np.testing.assert_array_equal(dx, expected)


def test_avgpool_counts_padding():
    x = np.ones((1, 1, 2, 2))
    a = dict(size=[2, 2], stride=[2, 2], pads=[1, 1, 1, 1], overhang=[0, 0])
    y, _ = KERNELS["avgpool2d"].forward([x], {}, a, Ctx())
    np.testing.assert_allclose(y, np.full((1, 1, 2, 2), 0.25))


# ----------------------------------------------------------------------------------------------
# recurrent layers vs step-by-step loops written from the formulas

def _sig(v):
    return 1 / (1 + np.exp(-v))


def ref_lstm(x, w):
    N, T, _ = x.shape
    u = w["weight_hh"].shape[1]
    Wi, Wh, bi, bh = w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"]
    blk = [slice(k * u, (k + 1) * u) for k in range(4)]
    h, c, hs = np.zeros((N, u)), np.zeros((N, u)), []
    for t in range(T):
        xt = x[:, t]

        def gate(k):
            return xt @ Wi[blk[k]].T + bi[blk[k]] + h @ Wh[blk[k]].T + bh[blk[k]]

        i, f, g, o = _sig(gate(0)), _sig(gate(1)), np.tanh(gate(2)), _sig(gate(3))
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs, axis=1)


def ref_gru(x, w):
    N, T, _ = x.shape
    u = w["weight_hh"].shape[1]
    Wi, Wh, bi, bh = w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"]
    blk = [slice(k * u, (k + 1) * u) for k in range(3)]
    h, hs = np.zeros((N, u)), []
    for t in range(T):
        xt = x[:, t]
        r = _sig(xt @ Wi[blk[0]].T + bi[blk[0]] + h @ Wh[blk[0]].T + bh[blk[0]])
        z = _sig(xt @ Wi[blk[1]].T + bi[blk[1]] + h @ Wh[blk[1]].T + bh[blk[1]])
        n = np.tanh(xt @ Wi[blk[2]].T + bi[blk[2]] + r * (h @ Wh[blk[2]].T + bh[blk[2]]))
        h = (1 - z) * n + z * h
        hs.append(h)
    return np.stack(hs, axis=1)


def ref_rnn(x, w, act):
    N, T, _ = x.shape
    f = np.tanh if act == "tanh" else (lambda v: np.maximum(v, 0))
    h, hs = np.zeros((N, w["weight_hh"].shape[0])), []
    for t in range(T):
        h = f(x[:, t] @ w["weight_ih"].T + w["bias_ih"] + h @ w["weight_hh"].T + w["bias_hh"])
        hs.append(h)
    return np.stack(hs, axis=1)


def ref_stack(op, x, w, a, rng=None):
    """The layer stack composed from the one-direction step loops: the backward direction is the
    loop on x[:, ::-1], reversed back; layer k + 1 reads [forward, backward] side by side, times an
    inverted dropout mask drawn from rng (in layer order) when given."""
    def one(inp, wd):
        if op == "rnn":
            return ref_rnn(inp, wd, a["activation"])
        return ref_lstm(inp, wd) if op == "lstm" else ref_gru(inp, wd)

    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    inp, last = x, None
    for k, suffixes in enumerate(a["suffixes"]):
        if k and rng is not None and a["dropout"] > 0:
            inp = inp * (rng.random(inp.shape) >= a["dropout"]) / (1 - a["dropout"])
        outs, lasts = [], []
        for d, s in enumerate(suffixes):
            wd = {n: w[n + s] for n in names}
            hs = one(inp if d == 0 else inp[:, ::-1], wd)
            lasts.append(hs[:, -1])
            outs.append(hs if d == 0 else hs[:, ::-1])
        inp, last = np.concatenate(outs, axis=-1), np.concatenate(lasts, axis=-1)
    return inp if a["return_sequences"] else last


@pytest.mark.parametrize("case", [c for c in CASES if c.op in ("rnn", "lstm", "gru")], ids=_id)
def test_recurrent_forward_matches_step_loop(case):
    xs, w = case.make(seed=5)
    # _forward draws dropout masks from default_rng(1): the reference draws the same ones
    ref = ref_stack(case.op, xs[0], w, case.a, np.random.default_rng(1) if case.training else None)
    y, _ = _forward(case, xs, w)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12, err_msg=f"{_id(case)}: forward")


def test_recurrent_dropout_only_between_layers_and_only_in_training():
    case = next(c for c in CASES if c.op == "lstm" and c.id == "l2-dropout-train")
    xs, w = case.make(seed=2)
    kernel = KERNELS["lstm"]
    train = [kernel.forward(xs, w, case.a, Ctx(training=True, rng=np.random.default_rng(s)))[0] for s in (1, 2)]
    evals = [kernel.forward(xs, w, case.a, Ctx(training=False, rng=np.random.default_rng(s)))[0] for s in (1, 2)]
    no_dropout = kernel.forward(xs, w, dict(case.a, dropout=0.0), Ctx(training=True))[0]
    assert not np.allclose(train[0], train[1]), "different masks give different outputs"
    np.testing.assert_array_equal(evals[0], evals[1])
    np.testing.assert_array_equal(evals[0], no_dropout)
    # the first layer's input is never dropped: one layer with dropout set is the plain layer
    one = dict(case.a, layers=1, suffixes=[["_l0"]])
    w1 = {k: v for k, v in w.items() if k.endswith("_l0")}
    y1 = kernel.forward(xs, w1, one, Ctx(training=True, rng=np.random.default_rng(1)))[0]
    np.testing.assert_allclose(y1, ref_stack("lstm", xs[0], w1, one), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# normalisation, dropout, embedding

def test_batchnorm_running_stats_update():
    x = np.array([[1.0, 10.0], [3.0, 20.0], [5.0, 30.0], [7.0, 40.0]])   # (N=4, C=2)
    w = dict(weight=np.array([2.0, 1.0]), bias=np.array([0.5, 0.0]),
             running_mean=np.array([0.0, 1.0]), running_var=np.array([1.0, 2.0]))
    rm, rv = w["running_mean"], w["running_var"]
    a = dict(momentum=0.9, eps=1e-5)
    y, _ = KERNELS["batchnorm"].forward([x], w, a, Ctx(training=True))
    # batch means 4, 25; unbiased variances 20/3, 500/3; biased 5, 125
    assert w["running_mean"] is rm and w["running_var"] is rv, "updated in place"
    np.testing.assert_allclose(rm, [0.9 * 0 + 0.1 * 4, 0.9 * 1 + 0.1 * 25])
    np.testing.assert_allclose(rv, [0.9 * 1 + 0.1 * 20 / 3, 0.9 * 2 + 0.1 * 500 / 3])
    expected = (x - [4.0, 25.0]) / np.sqrt(np.array([5.0, 125.0]) + 1e-5) * [2.0, 1.0] + [0.5, 0.0]
    np.testing.assert_allclose(y, expected)
    # eval: running statistics, and no update
    before = rm.copy(), rv.copy()
    y, _ = KERNELS["batchnorm"].forward([x], w, a, Ctx(training=False))
    np.testing.assert_allclose(y, (x - rm) / np.sqrt(rv + 1e-5) * [2.0, 1.0] + [0.5, 0.0])
    np.testing.assert_array_equal(rm, before[0])
    np.testing.assert_array_equal(rv, before[1])


def test_batchnorm_nchw_statistics_per_channel():
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 2)) * [[[[1.0]], [[2.0]], [[3.0]]]] + 7
    w = dict(weight=np.ones(3), bias=np.zeros(3), running_mean=np.zeros(3), running_var=np.ones(3))
    y, _ = KERNELS["batchnorm"].forward([x], w, dict(momentum=0.9, eps=1e-5), Ctx(training=True))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-4)
    np.testing.assert_allclose(w["running_mean"], 0.1 * x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(w["running_var"], 0.9 + 0.1 * x.transpose(1, 0, 2, 3).reshape(3, -1).var(axis=1, ddof=1))


def test_layernorm_forward():
    x = np.random.default_rng(0).standard_normal((3, 4, 6)) * 5 + 2
    w = dict(weight=np.ones(6), bias=np.zeros(6))
    y, _ = KERNELS["layernorm"].forward([x], w, dict(eps=1e-5), Ctx())
    np.testing.assert_allclose(y.mean(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(y, (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5))


def test_dropout_eval_is_identity():
    x = np.random.default_rng(0).standard_normal((10, 10))
    y, cache = KERNELS["dropout"].forward([x], {}, dict(rate=0.5), Ctx(training=False))
    np.testing.assert_array_equal(y, x)
    (dx,), _ = KERNELS["dropout"].backward(x, cache)
    np.testing.assert_array_equal(dx, x)


def test_dropout_train_mask_rate_scaling_and_seed():
    x = np.ones((200, 500))
    rate = 0.3
    k = KERNELS["dropout"]
    y, cache = k.forward([x], {}, dict(rate=rate), Ctx(training=True, rng=np.random.default_rng(7)))
    kept = y != 0
    assert abs(1 - kept.mean() - rate) < 0.01, f"dropped fraction {1 - kept.mean()}"
    np.testing.assert_allclose(y[kept], 1 / (1 - rate))
    # the mask is exactly rng.random(x.shape) >= rate
    expected = np.random.default_rng(7).random(x.shape) >= rate
    np.testing.assert_array_equal(kept, expected)
    y2, _ = k.forward([x], {}, dict(rate=rate), Ctx(training=True, rng=np.random.default_rng(7)))
    np.testing.assert_array_equal(y, y2)
    (dx,), _ = k.backward(np.full_like(x, 2.0), cache)
    np.testing.assert_allclose(dx, 2.0 * y)


def test_embedding_forward_and_repeated_ids():
    w = dict(weight=np.arange(12.0).reshape(4, 3))
    ids = np.array([[0, 3, 3], [1, 3, 0]])
    y, cache = KERNELS["embedding"].forward([ids], w, dict(vocab=4, dim=3), Ctx())
    np.testing.assert_array_equal(y, w["weight"][ids])
    dy = np.random.default_rng(0).standard_normal(y.shape)
    (dx,), dw = KERNELS["embedding"].backward(dy, cache)
    assert dx is None
    ref = np.zeros((4, 3))
    np.add.at(ref, ids.ravel(), dy.reshape(-1, 3))
    np.testing.assert_allclose(dw["weight"], ref)


@pytest.mark.parametrize("bad", [57, -1, 50])
def test_embedding_out_of_range_is_E720(bad):
    ids = np.array([[1, 2], [bad, 3]])
    with pytest.raises(NncError) as err:
        KERNELS["embedding"].forward([ids], dict(weight=np.zeros((50, 4))), dict(vocab=50, dim=4), Ctx())
    (d,) = err.value.diagnostics
    assert d.code == "E720"
    assert d.message == f"embedding input id {bad} is out of range [0, 50)"
    assert d.hint


# ----------------------------------------------------------------------------------------------
# activations

def test_softmax_rows_sum_to_one_and_log_softmax_agrees():
    x = np.random.default_rng(0).standard_normal((5, 3, 7)) * 300    # large: needs the max shift
    for axis in (0, 1):
        y, _ = KERNELS["softmax"].forward([x], {}, dict(axis=axis), Ctx())
        assert np.all(np.isfinite(y))
        np.testing.assert_allclose(y.sum(axis=axis + 1), 1.0, rtol=1e-12)
        ly, _ = KERNELS["log_softmax"].forward([x], {}, dict(axis=axis), Ctx())
        assert np.all(np.isfinite(ly))
        np.testing.assert_allclose(np.exp(ly), y, atol=1e-300)


def test_erf_matches_math_erf():
    x = np.concatenate([np.linspace(-8, 8, 16001), np.geomspace(1e-12, 0.5, 200),
                        -np.geomspace(1e-12, 0.5, 200), [0.0, 0.46875, 4.0, 30.0, -30.0]])
    ref = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(erf(x), ref, rtol=2e-15, atol=0)
    xc = np.linspace(-5, 26, 6201)
    refc = np.array([math.erfc(v) for v in xc])
    np.testing.assert_allclose(erfc(xc), refc, rtol=2e-15, atol=0)
    assert erf(x.astype(np.float32)).dtype == np.float32


def test_gelu_matches_math_erf_grid():
    x = np.linspace(-10, 10, 2001)
    y, _ = KERNELS["gelu"].forward([x], {}, {}, Ctx())
    ref = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    np.testing.assert_allclose(y, ref, rtol=1e-13, atol=1e-15)
    # far left tail: x * Phi(x) is tiny but must not be lost to cancellation
    y, _ = KERNELS["gelu"].forward([np.array([-20.0])], {}, {}, Ctx())
    np.testing.assert_allclose(y, [-20.0 * 0.5 * math.erfc(20 / math.sqrt(2))], rtol=1e-13)


def test_erf_float32_matches_math_erf_dense_grid():
    # the float32 path (a clamped rational approximation, float32 arithmetic) on a dense grid
    x = np.concatenate([np.linspace(-7, 7, 400_001), np.geomspace(1e-30, 1.0, 2000),
                        -np.geomspace(1e-30, 1.0, 2000)]).astype(np.float32)
    ref = np.array([math.erf(float(v)) for v in x])
    y = erf(x)
    assert y.dtype == np.float32
    err = np.abs(y.astype(np.float64) - ref)
    assert err.max() <= 5e-7                                   # a few float32 ulps near +-1
    tiny = np.abs(x) < 0.5                                    # and relative accuracy near 0
    assert (err[tiny] / np.abs(ref[tiny])).max() <= 3e-7
    np.testing.assert_array_equal(erf(np.array([0, np.inf, -np.inf], np.float32)), [0, 1, -1])
    assert np.isnan(erf(np.array([np.nan], np.float32)))[0]


def test_gelu_float32_matches_math_erf_grid():
    x = np.linspace(-10, 10, 100_001).astype(np.float32)
    y, cache = KERNELS["gelu"].forward([x], {}, {}, Ctx())
    assert y.dtype == np.float32
    xd = x.astype(np.float64)
    ref = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in xd])
    # Phi to about 2e-7 absolute (float32), times |x|
    assert np.all(np.abs(y - ref) <= 3e-7 * np.maximum(1, np.abs(xd)))
    (dx,), _ = KERNELS["gelu"].backward(np.ones_like(x), cache)
    assert dx.dtype == np.float32
    dref = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi)
                     for v in xd])
    assert np.all(np.abs(dx - dref) <= 5e-7 * np.maximum(1, np.abs(xd)))


def test_step_forward_and_straight_through_backward():
    x = np.array([[-2.0, -0.0, 0.0, 1e-9, 3.0]], dtype=np.float32)
    y, cache = KERNELS["step"].forward([x], {}, {}, Ctx())
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[0, 0, 0, 1, 1]])
    dy = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]], dtype=np.float32)
    (dx,), dw = KERNELS["step"].backward(dy, cache)
    np.testing.assert_array_equal(dx, dy)
    assert dw == {}


def test_activations_are_stable_at_extremes():
    x = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for op, a in [("sigmoid", {}), ("softplus", {}), ("silu", {}), ("elu", {"alpha": 1.0}),
                      ("selu", {}), ("tanh", {}), ("gelu", {})]:
            y, cache = KERNELS[op].forward([x], {}, a, Ctx())
            assert np.all(np.isfinite(y)), op
            (dx,), _ = KERNELS[op].backward(np.ones_like(x), cache)
            assert np.all(np.isfinite(dx)), op
    y, _ = KERNELS["sigmoid"].forward([x], {}, {}, Ctx())
    np.testing.assert_allclose(y, [[0.0, 1 / (1 + math.exp(50)), 0.5, 1 / (1 + math.exp(-50)), 1.0]])
    y, _ = KERNELS["softplus"].forward([np.array([[19.0, 21.0]])], {}, {}, Ctx())
    np.testing.assert_allclose(y, [[math.log1p(math.exp(19.0)), 21.0]], rtol=1e-15)
