"""The convolution family (issue 10): `groups` on conv2d / conv1d, conv2d_transpose, upsample2d and
warning W201 (conv1d straight after an embedding).

The kernels' gradient, PyTorch and ONNX rows live in the shared tables (tests/test_kernels.py,
tests/test_kernels_torch.py, tests/test_onnx_export.py); this file holds what does not fit there:
shapes, parameter counts and FLOPs against PyTorch's modules, forward references written as loops
from the definitions, initializer fans, the export at every opset, grouped transposed
convolutions in onnxruntime (``onnx.reference`` mis-slices them), the errors and the warning, and
end-to-end training and export of two small autoencoders.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest

import nnc
from nnc.api import NncWarning
from nnc.cli import main
from nnc.compiler.lower import check_source, compile_source
from nnc.errors import NncError
from nnc.onnx import export as E
from nnc.onnx import verify as V
from nnc.onnx.emitters import MIN_OPSET
from nnc.runtime import init
from nnc.runtime.graph import Graph
from nnc.runtime.kernels import KERNELS, Ctx

from test_onnx_export import lively_weights, op_types, program_of, roundtrip, session

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _node(body: str, index: int = -1):
    return program_of(body).model.nodes[index]


# ----------------------------------------------------------------------------------------------
# shapes, weights, parameters and FLOPs, against PyTorch's modules

@pytest.mark.parametrize("c, f, k, groups, stride, padding, dilation, bias", [
    (4, 6, 3, 2, 1, 1, 1, True),
    (6, 6, (3, 2), 3, 2, 0, (1, 2), False),
    (8, 16, 3, 8, 1, 1, 1, True),          # depthwise, multiplier 2
    (3, 3, 5, 3, 2, 2, 1, True),           # depthwise
    (6, 4, 1, 2, 1, 0, 1, True),
])
def test_grouped_conv2d_shape_params_and_flops_match_torch(c, f, k, groups, stride, padding, dilation, bias):
    kk = k if isinstance(k, tuple) else (k, k)
    dd = dilation if isinstance(dilation, tuple) else (dilation, dilation)

    def lst(v):
        return f"[{v[0]}, {v[1]}]" if isinstance(v, tuple) else str(v)
    node = _node(f"input x: [{c}, 11, 9]\nconv2d({f}, {lst(k)}, stride={stride}, padding={padding}, "
                 f"dilation={lst(dilation)}, groups={groups}, bias={'true' if bias else 'false'})")
    mod = torch.nn.Conv2d(c, f, kk, stride=stride, padding=padding, dilation=dd, groups=groups, bias=bias)
    y = mod(torch.zeros(1, c, 11, 9))
    assert tuple(node.shape) == tuple(y.shape[1:])
    shapes = {w.name: tuple(w.shape) for w in node.weights}
    assert shapes == {name: tuple(p.shape) for name, p in mod.named_parameters()}
    assert node.params == sum(p.numel() for p in mod.parameters())
    assert node.flops == 2 * y[0].numel() * (c // groups) * kk[0] * kk[1]
    assert node.attrs["groups"] == groups


@pytest.mark.parametrize("c, f, k, groups, stride, padding", [
    (4, 6, 3, 2, 1, "same"), (3, 6, 5, 3, 2, 2), (6, 3, 3, 3, 1, 0),
])
def test_grouped_conv1d_shape_params_and_flops_match_torch(c, f, k, groups, stride, padding):
    node = _node(f"input x: [{c}, 20]\nconv1d({f}, {k}, stride={stride}, padding={padding}, groups={groups})")
    mod = torch.nn.Conv1d(c, f, k, stride=stride, padding=padding if padding != "same" else k // 2,
                          groups=groups)
    y = mod(torch.zeros(1, c, 20))
    assert tuple(node.shape) == tuple(y.shape[1:])
    assert [tuple(w.shape) for w in node.weights] == [tuple(mod.weight.shape), tuple(mod.bias.shape)]
    assert node.params == sum(p.numel() for p in mod.parameters())
    assert node.flops == 2 * y[0].numel() * (c // groups) * k


# every combination of a small grid, against torch's own output size
_T_GRID = [dict(k=k, s=s, p=p, op=op, d=d) for k, s, p, op, d in itertools.product(
    (1, 2, 3), (1, 2, 3), (0, 1, 2), (0, 1, 2), (1, 2)) if op < s or op < d]


@pytest.mark.parametrize("g", _T_GRID, ids=lambda g: "k{k}s{s}p{p}op{op}d{d}".format(**g))
def test_conv2d_transpose_output_size_matches_torch(g):
    h, w = 3, 4
    try:
        ref = torch.nn.ConvTranspose2d(2, 3, g["k"], stride=g["s"], padding=g["p"], output_padding=g["op"],
                                       dilation=g["d"])(torch.zeros(1, 2, h, w)).shape[2:]
    except RuntimeError:        # torch refuses a non-positive output size: so must nnc (E213)
        ref = None
    body = (f"input x: [2, {h}, {w}]\nconv2d_transpose(3, {g['k']}, stride={g['s']}, padding={g['p']}, "
            f"output_padding={g['op']}, dilation={g['d']})")
    if ref is None:
        with pytest.raises(NncError) as err:
            program_of(body)
        assert [d.code for d in err.value.diagnostics] == ["E213"]
        return
    node = _node(body)
    assert tuple(node.shape) == (3, *ref)
    formula = [(n - 1) * g["s"] - 2 * g["p"] + g["d"] * (g["k"] - 1) + g["op"] + 1 for n in (h, w)]
    assert list(node.shape[1:]) == formula


@pytest.mark.parametrize("c, f, k, groups, bias", [(4, 6, 3, 2, True), (3, 3, (2, 4), 3, False), (2, 5, 2, 1, True)])
def test_conv2d_transpose_weights_params_and_flops_match_torch(c, f, k, groups, bias):
    kk = k if isinstance(k, tuple) else (k, k)
    ks = f"[{kk[0]}, {kk[1]}]"
    node = _node(f"input x: [{c}, 5, 6]\nconv2d_transpose({f}, {ks}, stride=2, padding=1, groups={groups}, "
                 f"bias={'true' if bias else 'false'})")
    mod = torch.nn.ConvTranspose2d(c, f, kk, stride=2, padding=1, groups=groups, bias=bias)
    y = mod(torch.zeros(1, c, 5, 6))
    assert tuple(node.shape) == tuple(y.shape[1:])
    assert {w.name: tuple(w.shape) for w in node.weights} == {n: tuple(p.shape) for n, p in mod.named_parameters()}
    assert node.params == sum(p.numel() for p in mod.parameters())
    assert node.flops == 2 * (c * 5 * 6) * (f // groups) * kk[0] * kk[1]
    assert node.attrs["pads"] == [1, 1, 1, 1]


def test_upsample2d_shape_and_defaults():
    node = _node("input x: [3, 4, 5]\nupsample2d([2, 3])")
    assert node.shape == [3, 8, 15] and node.weights == [] and node.params == 0 and node.flops == 0
    assert node.attrs == {"scale": [2, 3], "mode": "nearest"}
    assert _node("input x: [3, 4, 5]\nupsample2d(2, mode=bilinear)").shape == [3, 8, 10]
    assert _node("input x: [3, 4, 5]\nupsample2d(1)").shape == [3, 4, 5]


def test_the_new_parameters_are_in_the_summary_totals():
    prog = program_of("input x: [4, 8, 8]\nconv2d(8, 3, padding=1, groups=4) -> relu\n"
                      "conv2d_transpose(4, 2, stride=2, groups=2)\nupsample2d(2)\n"
                      "assert params == 148")          # 8*1*3*3 + 8, then 8*2*2*2 + 4
    assert [n.shape for n in prog.model.nodes] == [[8, 8, 8], [8, 8, 8], [4, 16, 16], [4, 32, 32]]


# ----------------------------------------------------------------------------------------------
# forward references written from the definitions

def naive_conv2d_transpose(x, weight, bias, stride, padding, output_padding, dilation, groups):
    """Every input value times the kernel, added at output (i*s + p*d - pad, j*s + q*d - pad)."""
    N, C, H, W = x.shape
    _, Fg, kh, kw = weight.shape
    Cg = C // groups
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    Ho = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    Wo = (W - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    y = np.zeros((N, Fg * groups, Ho, Wo))
    for n, c, i, j, f, p, q in itertools.product(range(N), range(C), range(H), range(W), range(Fg),
                                                 range(kh), range(kw)):
        r, col = i * sh + p * dh - ph, j * sw + q * dw - pw
        if 0 <= r < Ho and 0 <= col < Wo:
            y[n, (c // Cg) * Fg + f, r, col] += x[n, c, i, j] * weight[c, f, p, q]
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def naive_upsample(x, sh, sw, mode):
    N, C, H, W = x.shape
    y = np.zeros((N, C, H * sh, W * sw))
    for i, j in itertools.product(range(H * sh), range(W * sw)):
        if mode == "nearest":
            y[:, :, i, j] = x[:, :, i // sh, j // sw]
            continue
        # PyTorch's area_pixel_compute_source_index (align_corners=False), then the two neighbours
        si, sj = max((i + 0.5) / sh - 0.5, 0.0), max((j + 0.5) / sw - 0.5, 0.0)
        i0, j0 = int(si), int(sj)
        i1, j1 = min(i0 + 1, H - 1), min(j0 + 1, W - 1)
        li, lj = si - i0, sj - j0
        y[:, :, i, j] = ((1 - li) * ((1 - lj) * x[:, :, i0, j0] + lj * x[:, :, i0, j1])
                         + li * ((1 - lj) * x[:, :, i1, j0] + lj * x[:, :, i1, j1]))
    return y


@pytest.mark.parametrize("stride, padding, output_padding, dilation, groups, bias", [
    ((1, 1), (0, 0), (0, 0), (1, 1), 1, True),
    ((2, 2), (1, 0), (1, 0), (1, 1), 1, True),
    ((2, 3), (0, 2), (1, 2), (1, 2), 2, False),
    ((1, 1), (1, 1), (1, 1), (2, 2), 1, True),    # output_padding below the dilation only
    ((3, 1), (2, 0), (2, 0), (1, 1), 4, True),    # depthwise
])
def test_conv2d_transpose_forward_matches_naive_loop(stride, padding, output_padding, dilation, groups, bias):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 3, 4))
    w = {"weight": rng.standard_normal((4, 6 // groups if groups != 4 else 1, 3, 2))}
    fout = w["weight"].shape[1] * groups
    if bias:
        w["bias"] = rng.standard_normal(fout)
    a = dict(stride=list(stride), padding=list(padding), output_padding=list(output_padding),
             dilation=list(dilation), groups=groups, pads=list(padding) * 2, bias=bias)
    y, _ = KERNELS["conv2d_transpose"].forward([x], w, a, Ctx())
    ref = naive_conv2d_transpose(x, w["weight"], w.get("bias"), stride, padding, output_padding, dilation, groups)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("scale", [(1, 1), (2, 2), (3, 2), (1, 4), (5, 3)])
def test_upsample2d_forward_matches_naive_loop(mode, scale):
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 3))
    y, _ = KERNELS["upsample2d"].forward([x], {}, dict(scale=list(scale), mode=mode), Ctx())
    np.testing.assert_allclose(y, naive_upsample(x, *scale, mode), rtol=1e-13, atol=1e-13)


def test_upsample2d_bilinear_keeps_constants_and_ramps():
    """Interpolation reproduces a constant exactly and a linear ramp away from the clamped edges."""
    k = KERNELS["upsample2d"]
    y, _ = k.forward([np.full((1, 1, 3, 3), 2.5)], {}, dict(scale=[4, 3], mode="bilinear"), Ctx())
    np.testing.assert_allclose(y, 2.5)
    ramp = np.arange(6.0)[None, None, None, :] * np.ones((1, 1, 2, 1))
    y, _ = k.forward([ramp], {}, dict(scale=[1, 2], mode="bilinear"), Ctx())
    # output column o reads (o + 0.5) / 2 - 0.5: [0 (clamped), 0.25, 0.75, ..., 4.75, 5 (clamped)]
    np.testing.assert_allclose(y[0, 0, 0], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75, 4.25, 4.75, 5])


@pytest.mark.parametrize("op, a, xshape, wshapes", [
    ("conv2d", dict(stride=[1, 1], dilation=[1, 1], pads=[1, 1, 1, 1], groups=8, bias=True),
     (4, 8, 12, 10), {"weight": (16, 1, 3, 3), "bias": (16,)}),
    ("conv2d", dict(stride=[2, 2], dilation=[1, 1], pads=[0, 1, 0, 1], groups=4, bias=True),
     (3, 8, 12, 10), {"weight": (8, 2, 3, 3), "bias": (8,)}),
    ("conv2d_transpose", dict(stride=[2, 2], padding=[1, 1], output_padding=[1, 1], dilation=[1, 1], groups=2,
                              pads=[1, 1, 1, 1], bias=True), (3, 6, 7, 5), {"weight": (6, 4, 3, 3), "bias": (8,)}),
])
def test_float32_matches_torch(op, a, xshape, wshapes):
    """The float32 path (what training runs) against torch in float32."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xshape).astype(np.float32)
    w = {k: rng.standard_normal(s).astype(np.float32) for k, s in wshapes.items()}
    y, cache = KERNELS[op].forward([x], w, a, Ctx(training=True))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    (dx,), g = KERNELS[op].backward(dy, cache)
    tx = torch.tensor(x, requires_grad=True)
    tw = {k: torch.tensor(v, requires_grad=True) for k, v in w.items()}
    if op == "conv2d":
        t, l, b, r = a["pads"]
        ty = F.conv2d(F.pad(tx, (l, r, t, b)), tw["weight"], tw["bias"], stride=a["stride"], groups=a["groups"])
    else:
        ty = F.conv_transpose2d(tx, tw["weight"], tw["bias"], stride=a["stride"], padding=a["padding"],
                                output_padding=a["output_padding"], groups=a["groups"])
    ty.backward(torch.tensor(dy))
    assert y.dtype == dx.dtype == g["weight"].dtype == g["bias"].dtype == np.float32
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    for k in w:
        np.testing.assert_allclose(g[k], tw[k].grad.numpy(), rtol=1e-4, atol=1e-3)


# ----------------------------------------------------------------------------------------------
# initializer fans: read off the stored layout, as torch.nn.init reads them

@pytest.mark.parametrize("body", [
    "input x: [6, 8, 8]\nconv2d(4, 3, groups=2)",
    "input x: [6, 8, 8]\nconv2d(6, [3, 2], groups=6)",
    "input x: [6, 8, 8]\nconv2d_transpose(4, 3, stride=2, groups=2)",
    "input x: [3, 8, 8]\nconv2d_transpose(5, [2, 4])",
])
def test_fans_are_torchs(body):
    (wt, _bias) = _node(body).weights
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(wt.shape))
    assert init.fans(tuple(wt.shape)) == (fan_in, fan_out)


def test_conv2d_transpose_he_uniform_bound_uses_torchs_fan_in():
    prog = program_of("input x: [8, 4, 4]\nconv2d_transpose(2, 3, init=he_uniform)")
    w = Graph(prog.model).init_weights(0)["conv2d_transpose_1.weight"]
    assert w.shape == (8, 2, 3, 3)
    bound = np.sqrt(6.0 / (2 * 9))          # fan_in = weight.size(1) * kh * kw, as torch
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound


# ----------------------------------------------------------------------------------------------
# ONNX: every opset, onnxruntime against torch directly, grouped transposed convolutions

_OPSET_CASES = {
    "upsample_nearest": "input x: [2, 3, 4]\nupsample2d([3, 2])",
    "upsample_bilinear": "input x: [2, 3, 4]\nupsample2d([2, 3], mode=bilinear)",
    "upsample_bilinear_1x1": "input x: [2, 1, 1]\nupsample2d([1, 4], mode=bilinear)",
    "upsample_then_conv": "input x: [2, 3, 4]\nupsample2d(2, mode=bilinear) -> conv2d(2, 3) -> upsample2d([1, 2])",
    "conv_groups": "input x: [4, 6, 5]\nconv2d(6, 3, groups=2, padding=same)",
    "transpose": "input x: [2, 4, 5]\nconv2d_transpose(3, 3, stride=2, padding=1, output_padding=1)",
    "transpose_outpad_dilation": "input x: [2, 4, 5]\n"
    "conv2d_transpose(2, 3, stride=[2, 1], padding=[0, 1], output_padding=[1, 2], dilation=[1, 3])",
}


@pytest.mark.parametrize("opset", list(E.supported_opsets()))
@pytest.mark.parametrize("case", list(_OPSET_CASES))
def test_every_supported_opset(case, opset):
    exp, worst = roundtrip(program_of(_OPSET_CASES[case]), opset=opset, batches=(1, 3))
    assert exp.opset == opset and worst <= 1e-4
    for resize in (n for n in exp.proto.graph.node if n.op_type == "Resize"):
        assert len(resize.input) == 3 and (resize.input[1] == "") == (opset >= 13)
    if case.startswith("upsample"):
        assert "Resize" in op_types(exp)


@pytest.mark.parametrize("mode, scale", [("nearest", (3, 2)), ("bilinear", (2, 3)), ("bilinear", (4, 1))])
def test_resize_in_onnxruntime_is_torchs_interpolate(mode, scale):
    """Independent of nnc's kernel: onnxruntime's Resize as exported equals F.interpolate."""
    prog = program_of(f"input x: [2, 5, 4]\nupsample2d([{scale[0]}, {scale[1]}], mode={mode})")
    exp = E.build(prog)
    x = np.random.default_rng(6).standard_normal((3, 2, 5, 4)).astype(np.float32)
    (got,) = session(exp.proto).run(None, {"x": x})
    extra = {} if mode == "nearest" else {"align_corners": False}
    want = F.interpolate(torch.tensor(x), scale_factor=scale, mode=mode, **extra).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("body", [
    "input x: [4, 4, 5]\nconv2d_transpose(6, [3, 2], stride=[2, 3], padding=[1, 0], output_padding=[1, 2], "
    "dilation=[1, 2], groups=2)",
    "input x: [3, 4, 5]\nconv2d_transpose(6, 3, stride=2, groups=3)",
    "input x: [4, 3, 3]\nconv2d_transpose(4, 2, padding=1, output_padding=1, dilation=2, groups=2)",
])
def test_grouped_conv2d_transpose_exports_to_onnxruntime(body):
    # NOTE: onnx.reference's ConvTranspose (onnx 1.23) slices the weight by output channels and adds
    # bias[0] to every group for group > 1 (fixed upstream in onnx/onnx#8446), so these run in
    # onnxruntime only; onnxruntime is in turn compared with torch below.
    prog = program_of(body)
    exp, worst = roundtrip(prog, reference=False)
    assert worst <= 1e-4
    node = prog.model.nodes[0]
    w = exp.weights
    x = V.random_inputs(prog.model, 4, seed=2)["x"]
    (got,) = session(exp.proto).run(None, {"x": x})
    a = node.attrs
    want = F.conv_transpose2d(torch.tensor(x), torch.tensor(w[f"{node.id}.weight"]), torch.tensor(w[f"{node.id}.bias"]),
                              stride=a["stride"], padding=a["padding"], output_padding=a["output_padding"],
                              groups=a["groups"], dilation=a["dilation"]).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_grouped_conv_exports_the_group_attribute():
    exp = E.build(program_of("input x: [6, 5, 5]\nconv2d(6, 3, groups=3) -> conv2d_transpose(4, 2, groups=2)"))
    groups = [next(a.i for a in n.attribute if a.name == "group") for n in exp.proto.graph.node]
    assert op_types(exp) == ["Conv", "ConvTranspose"] and groups == [3, 2]
    inits = {t.name: tuple(t.dims) for t in exp.proto.graph.initializer}
    assert inits["conv2d_1.weight"] == (6, 2, 3, 3) and inits["conv2d_transpose_1.weight"] == (6, 2, 2, 2)


# ----------------------------------------------------------------------------------------------
# errors and the warning

def _codes(body: str) -> list[str]:
    with pytest.raises(NncError) as err:
        program_of(body)
    return [d.code for d in err.value.diagnostics if d.severity == "error"]


@pytest.mark.parametrize("body, code, text", [
    ("input x: [6, 8, 8]\nconv2d(12, 3, groups=4)", "E212", "input channels C = 6"),
    ("input x: [6, 8, 8]\nconv2d(9, 3, groups=2)", "E212", "filters = 9"),
    ("input x: [6, 8]\nconv1d(4, 3, groups=6)", "E212", "filters = 4"),
    ("input x: [4, 8, 8]\nconv2d_transpose(6, 3, groups=4)", "E212", "filters = 6"),
    ("input x: [3, 8, 8]\nconv2d_transpose(6, 3, groups=2)", "E212", "input channels C = 3"),
    ("input x: [2, 5, 1]\nconv2d_transpose(2, [1, 1], padding=[0, 1])", "E213", "output width would be -1"),
    ("input x: [2, 5]\nconv2d_transpose(2, 3)", "E202", "conv2d_transpose expects [C, H, W]"),
    ("input x: [2, 5]\nupsample2d(2)", "E214", "upsample2d expects [C, H, W] per example, got [2, 5]"),
    ("input x: [2, 5, 5]\nconv2d_transpose(2, 3, stride=2, output_padding=2)", "E402", "output_padding` 2"),
    ("input x: [2, 5, 5]\nconv2d_transpose(2, 3, stride=[1, 2], output_padding=[0, 2], dilation=[1, 2])",
     "E402", "output_padding` 2 on the width must be smaller than the stride 2 or the dilation 2"),
    ("input x: [2, 5, 5]\nconv2d(2, 3, groups=0)", "E402", "groups"),
    ("input x: [2, 5, 5]\nupsample2d(0)", "E402", "scale"),
    ("input x: [2, 5, 5]\nupsample2d(2, mode=bicubic)", "E310", "unknown upsample mode `bicubic`"),
    ("input x: [2, 5, 5]\nconv2d_transpose(2, 3, padding=same)", "E401", "padding"),
])
def test_errors(body, code, text):
    with pytest.raises(NncError) as err:
        program_of(body)
    (d,) = [d for d in err.value.diagnostics if d.severity == "error"]
    assert d.code == code and text in d.message, d.message
    assert d.span is not None and d.span.line == 3   # the stage (or its argument), not the file
    if code in ("E212", "E213", "E214") or "output_padding" in text:
        assert d.hint


def test_groups_hint_lists_the_counts_that_divide_both():
    with pytest.raises(NncError) as err:
        program_of("input x: [12, 8, 8]\nconv2d(18, 3, groups=4)")
    (d,) = err.value.diagnostics
    assert d.hint.endswith("use one of 1, 2, 3, 6")


def test_output_padding_below_the_dilation_is_accepted():
    node = _node("input x: [2, 5, 5]\nconv2d_transpose(2, 3, output_padding=1, dilation=2)")
    assert node.shape == [2, 10, 10]


def test_a_let_may_not_be_named_like_a_mode():
    assert _codes("let bilinear = 2\ninput x: [2, 5, 5]\nupsample2d(bilinear)") == ["E314"]


def _warnings(body: str) -> list:
    out: list = []
    check_source(f"model m {{\n{body}\n}}\n", "m.nnspec", warnings=out)
    return out


@pytest.mark.parametrize("body", [
    "input t: int64 [20]\nembedding(50, 8) -> conv1d(4, 3)",
    "input t: int64 [20]\nembedding(50, 8) -> dropout(0.2) -> relu -> layernorm -> conv1d(4, 3)",
    "input t: int64 [20]\ne = embedding(50, 8)\nh = e -> conv1d(4, 3, name=\"c\")",
])
def test_w201_conv1d_on_an_embedding(body):
    (w,) = _warnings(body)
    assert w.code == "W201" and w.severity == "warning"
    assert "[20, 8]" in w.message and "transpose([1, 0])" in w.hint
    assert w.span.line == body.count("\n") + 2


@pytest.mark.parametrize("body", [
    "input x: [8, 20]\nconv1d(4, 3)",                                        # a real [C, L] signal
    "input t: int64 [20]\nembedding(50, 8) -> reshape([8, 20]) -> conv1d(4, 3)",   # laid out on purpose
    "input t: int64 [20]\nembedding(50, 8) -> dense(8) -> flatten",
])
def test_no_w201_elsewhere(body):
    assert _warnings(body) == []


def test_w201_does_not_stop_check_or_compile(tmp_path, capsys):
    spec = tmp_path / "w.nnspec"
    spec.write_text("model m {\n    input t: int64 [20]\n    embedding(50, 8) -> conv1d(4, 3) -> flatten\n}\n")
    assert main(["check", str(spec)]) == 0
    assert "warning[W201]" in capsys.readouterr().out
    with pytest.warns(NncWarning, match="W201"):
        model = nnc.load(spec)
    assert model.predict(np.zeros((2, 20), np.int64)).shape == (2, 4 * 6)


# ----------------------------------------------------------------------------------------------
# end to end: small autoencoders check, train and export

AUTOENCODERS = {
    "transpose": """
model ae_transpose {
    input image: [1, 8, 8]
    conv2d(8, 3, stride=2, padding=same) -> relu               # [8, 4, 4]
    conv2d(8, 3, padding=same, groups=8) -> relu               # depthwise
    conv2d_transpose(1, 2, stride=2)                           # [1, 8, 8]
    assert output == [1, 8, 8]
}
""",
    "upsample": """
model ae_upsample {
    input image: [2, 8, 8]
    conv2d(8, 3, stride=2, padding=same, groups=2) -> relu     # [8, 4, 4]
    upsample2d(2, mode=bilinear)                               # [8, 8, 8]
    conv2d(4, 3, padding=same) -> relu
    upsample2d([1, 1])
    conv2d(2, 1)
    assert output == [2, 8, 8]
}
""",
}
TRAIN = """
train {
    loss = mse
    optimizer = adam(lr=0.01)
    epochs = 4
    batch_size = 16
    seed = 0
}
"""


def _blobs(n: int, channels: int, seed: int = 0) -> np.ndarray:
    """Smooth images: a Gaussian blob at a random place per example and channel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:8, 0:8]
    cy, cx = rng.uniform(1, 6, (2, n, channels, 1, 1))
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0).astype(np.float32)


@pytest.mark.parametrize("kind", list(AUTOENCODERS))
def test_autoencoder_checks_trains_and_exports(kind, tmp_path, capsys):
    spec = tmp_path / f"{kind}.nnspec"
    spec.write_text(AUTOENCODERS[kind] + TRAIN)
    assert main(["check", str(spec)]) == 0
    capsys.readouterr()
    model = nnc.load(spec)
    channels = model.program.model.inputs[0].shape[0]
    x = _blobs(96, channels)
    before = model.evaluate(x, x)["loss"]
    history = model.fit(x, x)
    assert len(history) == 4
    assert history[-1]["loss"] < history[0]["loss"]
    assert model.evaluate(x, x)["loss"] < before
    report = model.export(tmp_path / f"{kind}.onnx")
    assert "verified: checker, shapes, onnxruntime" in report
    sess = session(onnx.load(str(tmp_path / f"{kind}.onnx")))
    (got,) = sess.run(None, {"image": x[:5]})
    np.testing.assert_allclose(got, model.predict(x[:5]), rtol=1e-4, atol=1e-5)


def test_autoencoder_through_nnc_train(tmp_path, capsys):
    spec = tmp_path / "ae.nnspec"
    spec.write_text(AUTOENCODERS["transpose"] + TRAIN.replace("epochs = 4", "epochs = 2"))
    x = _blobs(64, 1, seed=1)
    np.savez(tmp_path / "blobs.npz", x=x, y=x)
    out = tmp_path / "run"
    code = main(["train", str(spec), "--data", f'npz("{tmp_path / "blobs.npz"}")', "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert {"weights.npz", "checkpoint.npz", "history.csv", "model.onnx"} <= {p.name for p in out.iterdir()}
    with np.load(out / "weights.npz") as z:
        assert z["conv2d_transpose_1.weight"].shape == (8, 1, 2, 2)
        assert z["conv2d_2.weight"].shape == (8, 1, 3, 3)
    exp = onnx.load(str(out / "model.onnx"))
    assert [n.op_type for n in exp.graph.node] == ["Conv", "Relu", "Conv", "Relu", "ConvTranspose"]
