"""conv2d_transpose's sample-major kernel (batched GEMMs in the (N, C, H, W) layout) against the
channel-major formulation it replaced (one (F*kh*kw, N*H*W) GEMM, kept here as the reference):
the same outputs and gradients to float64 rounding."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from nnc.runtime.kernels import KERNELS
from nnc.runtime.kernels import conv as C
from nnc.runtime.kernels.base import Ctx


def reference(x, weight, bias, stride, dilation, padding, output_padding, G, dy):
    """y, dx, dweight, dbias of the channel-major formulation; x: (N, C, H, W), weight: (C, F/G, kh, kw)."""
    N, Cin, H, W = x.shape
    _, Fg, kh, kw = weight.shape
    F = Fg * G
    (sh, sw), (dh, dw), (ph, pw), (oph, opw) = stride, dilation, padding, output_padding
    Ho = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    Wo = (W - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    Hb = max((H - 1) * sh + dh * (kh - 1) + 1, ph + Ho)
    Wb = max((W - 1) * sw + dw * (kw - 1) + 1, pw + Wo)
    xf = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(Cin, N * H * W)
    wm = weight.reshape(Cin, Fg * kh * kw)
    cols = C._wT_dy(wm, xf, G).reshape(F, kh, kw, N, H, W)
    buf = np.zeros((F, N, Hb, Wb))
    for p in range(kh):
        for q in range(kw):
            buf[:, :, p * dh:p * dh + sh * (H - 1) + 1:sh, q * dw:q * dw + sw * (W - 1) + 1:sw] += cols[:, p, q]
    y = buf[:, :, ph:ph + Ho, pw:pw + Wo].transpose(1, 0, 2, 3)
    if bias is not None:
        y = y + bias[:, None, None]
    dyb = np.zeros((F, N, Hb, Wb))
    dyb[:, :, ph:ph + Ho, pw:pw + Wo] = dy.transpose(1, 0, 2, 3)
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = sliding_window_view(dyb, (ekh, ekw), axis=(2, 3))[:, :, :sh * (H - 1) + 1:sh, :sw * (W - 1) + 1:sw,
                                                            ::dh, ::dw]
    dcols = win.transpose(0, 4, 5, 1, 2, 3).reshape(F * kh * kw, N * H * W)
    dx = C._wx(wm, dcols, G).reshape(Cin, N, H, W).transpose(1, 0, 2, 3)
    dweight = C._dy_colsT(xf, dcols, G).reshape(weight.shape)
    dbias = dy.sum(axis=(0, 2, 3)) if bias is not None else None
    return y, dx, dweight, dbias


CASES = [
    # (C, F, H, W, k, stride, padding, output_padding, dilation, groups)
    (2, 3, 3, 4, (3, 3), (1, 1), (0, 0), (0, 0), (1, 1), 1),
    (3, 2, 3, 3, (2, 2), (2, 2), (0, 0), (0, 0), (1, 1), 1),
    (2, 3, 3, 4, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1),
    (2, 2, 3, 3, (2, 3), (3, 1), (0, 1), (2, 0), (1, 2), 1),
    (2, 2, 3, 3, (2, 2), (1, 1), (0, 0), (1, 1), (2, 2), 1),
    (4, 6, 3, 3, (3, 2), (2, 2), (0, 0), (0, 0), (1, 1), 2),
    (3, 3, 3, 4, (3, 3), (2, 1), (1, 1), (0, 0), (1, 1), 3),
    (6, 4, 5, 4, (4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 2),
    (3, 5, 4, 5, (4, 3), (2, 3), (2, 0), (1, 2), (1, 1), 1),    # cropped past the buffer's end
    (2, 3, 4, 4, (1, 2), (3, 3), (0, 0), (2, 1), (1, 1), 1),    # kernel smaller than the stride
    (4, 4, 5, 5, (4, 4), (2, 2), (1, 1), (1, 1), (1, 1), 4),    # depthwise, output_padding
    (3, 3, 4, 4, (3, 3), (1, 1), (1, 1), (0, 0), (1, 1), 1),    # stride 1: one phase
]


# each case in the form the kernel picks, and forced into each form it has (the phase form exists
# for dilation 1 only)
FORMS = [(case, form) for case in CASES for form in ("auto", "phases", "scatter")
         if form != "phases" or case[8] == (1, 1)]


@pytest.mark.parametrize("case,form", FORMS)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_transpose_matches_channel_major(case, bias, form, monkeypatch):
    c, f, h, w_, k, stride, padding, outpad, dilation, g = case
    if form != "auto":
        monkeypatch.setattr(C, "_use_phases", lambda *a: form == "phases")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, c, h, w_))
    w = {"weight": rng.standard_normal((c, f // g, *k))}
    if bias:
        w["bias"] = rng.standard_normal(f)
    a = {"stride": list(stride), "padding": list(padding), "output_padding": list(outpad),
         "dilation": list(dilation), "groups": g, "bias": bias}
    kern = KERNELS["conv2d_transpose"]
    y, cache = kern.forward([x], w, a, Ctx())
    if form != "auto":
        assert isinstance(cache, C.ConvTransposePhaseCache) == (form == "phases")
    dy = rng.standard_normal(y.shape)
    ry, rdx, rdw, rdb = reference(x, w["weight"], w.get("bias"), stride, dilation, padding, outpad, g, dy)
    np.testing.assert_allclose(y, ry, rtol=1e-12, atol=1e-12)
    (dx,), grads = kern.backward(dy, cache)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads["weight"], rdw, rtol=1e-12, atol=1e-12)
    only = kern.weight_backward(dy, cache)
    np.testing.assert_allclose(only["weight"], rdw, rtol=1e-12, atol=1e-12)
    if bias:
        np.testing.assert_allclose(grads["bias"], rdb, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(only["bias"], rdb, rtol=1e-12, atol=1e-12)
    else:
        assert "bias" not in grads and "bias" not in only


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_transpose_keeps_float32_and_does_not_touch_its_input(stride):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    x0 = x.copy()
    w = {"weight": rng.standard_normal((4, 3, 4, 4)).astype(np.float32), "bias": np.ones(3, np.float32)}
    a = {"stride": [stride, stride], "padding": [1, 1], "output_padding": [0, 0], "dilation": [1, 1], "groups": 1,
         "bias": True}
    kern = KERNELS["conv2d_transpose"]
    y, cache = kern.forward([x], w, a, Ctx())
    (dx,), grads = kern.backward(np.ones_like(y), cache)
    assert y.dtype == dx.dtype == grads["weight"].dtype == grads["bias"].dtype == np.float32
    assert y.flags.c_contiguous and dx.flags.c_contiguous
    np.testing.assert_array_equal(x, x0)
