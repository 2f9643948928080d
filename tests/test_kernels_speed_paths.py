"""Fast paths in nnc.runtime.kernels: stride-1 "wide" convolution (whole and in ranges of samples),
tiled maxpool backward with ties, relu's shared zeros buffer, the planar LSTM. Each is checked against a plain reference."""
from __future__ import annotations

import numpy as np
import pytest

from nnc.runtime.kernels import KERNELS, Ctx

try:  # torch is a comparison reference only; the other checks here run without it
    import torch
    F = torch.nn.functional
except ImportError:
    torch = F = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed (comparisons only)")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,c,h,w,f,k,dil,pads,bias,groups", [
    (5, 3, 9, 7, 4, (3, 3), (1, 1), (1, 1, 1, 1), True, 1),     # 'same', batch > 1 (run wrap-around)
    (3, 2, 6, 8, 3, (2, 3), (2, 1), (0, 2, 1, 0), False, 1),    # dilation, asymmetric pads
    (4, 1, 5, 5, 2, (1, 1), (1, 1), (0, 0, 0, 0), True, 1),     # 1x1
    # f <= c: dx as the correlation of dy with the flipped kernel
    (3, 5, 7, 6, 3, (3, 3), (1, 1), (1, 1, 1, 1), True, 1),
    (2, 4, 8, 7, 4, (3, 2), (2, 1), (2, 0, 1, 1), False, 1),    # dilation, asymmetric pads
    (2, 6, 7, 7, 4, (3, 3), (1, 2), (0, 1, 2, 3), True, 2),     # groups
    (2, 4, 6, 6, 4, (3, 3), (1, 1), (1, 1, 1, 1), True, 4),     # depthwise
    (2, 4, 6, 6, 2, (3, 3), (1, 1), (3, 0, 0, 3), True, 1),     # padding beyond the kernel: the scatter
])
@pytest.mark.parametrize("chunk_bytes", [None, 1, 700])   # the columns whole; one sample; a few
@needs_torch
def test_conv2d_stride1_matches_torch(dtype, n, c, h, w, f, k, dil, pads, bias, groups, chunk_bytes,
                                      monkeypatch):
    from nnc.runtime.kernels import conv
    if chunk_bytes is not None:
        monkeypatch.setattr(conv, "COLS_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wts = {"weight": rng.standard_normal((f, c // groups, *k)).astype(dtype),
           "bias": rng.standard_normal(f).astype(dtype)}
    a = {"stride": [1, 1], "dilation": list(dil), "pads": list(pads), "groups": groups, "bias": bias}
    kern = KERNELS["conv2d"]
    y, cache = kern.forward([x], wts, a, Ctx(training=True))
    dy = rng.standard_normal(y.shape).astype(dtype)
    if isinstance(cache, conv.ConvCache):      # 1x1 and depthwise convolutions take other paths
        assert bool(cache.chunks) == (chunk_bytes is not None and groups == 1)
    (dx,), g = kern.backward(dy, cache)
    # a first layer needs only the weight gradients: the same numbers
    gw = kern.weight_backward(dy, cache)
    assert gw.keys() == g.keys() and all(np.array_equal(gw[key], g[key]) for key in g)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(wts["weight"], requires_grad=True)
    tb = torch.tensor(wts["bias"], requires_grad=True) if bias else None
    t, l, b, r = pads
    ty = F.conv2d(F.pad(tx, (l, r, t, b)), tw, tb, dilation=dil, groups=groups)
    ty.backward(torch.tensor(dy))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert y.dtype == dx.dtype == g["weight"].dtype == dtype
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(g["weight"], tw.grad.numpy(), rtol=tol, atol=tol)
    if bias:
        np.testing.assert_allclose(g["bias"], tb.grad.numpy(), rtol=tol, atol=tol)
    else:
        assert "bias" not in g


def test_maxpool_tiled_backward_ties_go_to_first_max():
    rng = np.random.default_rng(2)
    x = np.maximum(rng.standard_normal((3, 2, 6, 8)), 0).astype(np.float32)   # many all-zero windows
    x[0, 0, :2, :2] = 1.0                                                      # a 4-way tie
    a = {"size": [2, 2], "stride": [2, 2], "pads": [0, 0, 0, 0], "overhang": [0, 0]}
    y, cache = KERNELS["maxpool2d"].forward([x], {}, a, Ctx(training=True))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    (dx,), _ = KERNELS["maxpool2d"].backward(dy, cache)
    ref = np.zeros_like(x)
    for n in range(3):
        for c in range(2):
            for i in range(3):
                for j in range(4):
                    win = x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                    p, q = np.unravel_index(np.argmax(win), win.shape)   # first max, row-major
                    ref[n, c, 2 * i + p, 2 * j + q] = dy[n, c, i, j]
    np.testing.assert_array_equal(dx, ref)


def test_relu_zeros_buffer_across_shapes_and_dtypes():
    relu = KERNELS["relu"]
    for shape, dtype in [((2, 3), np.float32), ((4, 5, 6), np.float32), ((2, 3), np.float64),
                         ((7,), np.float32), ((3, 50), np.float64)]:
        x = np.random.default_rng(3).standard_normal(shape).astype(dtype)
        y, cache = relu.forward([x], {}, {}, Ctx())
        assert y.dtype == dtype and y.shape == shape and y.flags.writeable
        np.testing.assert_array_equal(y, np.where(x > 0, x, 0))
        (dx,), _ = relu.backward(np.ones_like(x), cache)
        np.testing.assert_array_equal(dx, (x > 0).astype(dtype))


@pytest.mark.parametrize("seq", [False, True])
@needs_torch
def test_lstm_matches_torch_float32(seq):
    rng = np.random.default_rng(4)
    n, t, f, u = 5, 7, 3, 6
    x = rng.standard_normal((n, t, f)).astype(np.float32)
    w = {"weight_ih": rng.standard_normal((4 * u, f)).astype(np.float32) * 0.5,
         "weight_hh": rng.standard_normal((4 * u, u)).astype(np.float32) * 0.5,
         "bias_ih": rng.standard_normal(4 * u).astype(np.float32),
         "bias_hh": rng.standard_normal(4 * u).astype(np.float32)}
    a = {"units": u, "return_sequences": seq, "bidirectional": False, "layers": 1, "dropout": 0.0,
         "suffixes": [[""]]}
    y, cache = KERNELS["lstm"].forward([x], w, a, Ctx(training=True))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    (dx,), g = KERNELS["lstm"].backward(dy, cache)
    m = torch.nn.LSTM(f, u, batch_first=True)
    with torch.no_grad():
        for k in w:
            getattr(m, k + "_l0").copy_(torch.tensor(w[k]))
    tx = torch.tensor(x, requires_grad=True)
    out, (h, _) = m(tx)
    ty = out if seq else h[-1]
    ty.backward(torch.tensor(dy))
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    for k in w:
        assert g[k].dtype == np.float32
        np.testing.assert_allclose(g[k], getattr(m, k + "_l0").grad.numpy(), rtol=1e-4, atol=1e-5)
    assert g["bias_ih"] is not g["bias_hh"]


@pytest.mark.parametrize("size,stride,pads,overhang", [
    ((2, 2), (2, 2), (0, 0, 0, 0), (0, 0)),      # tiled
    ((2, 3), (3, 3), (1, 0, 0, 2), (0, 0)),      # disjoint with gaps and padding
    ((3, 2), (3, 2), (0, 1, 0, 1), (2, 1)),      # ceil_mode overhang
    ((3, 3), (2, 2), (1, 1, 1, 1), (0, 0)),      # overlapping: the in-place path either way
])
def test_maxpool_training_planes_match_the_in_place_windows(size, stride, pads, overhang):
    """Training caches the window planes of disjoint windows; the values and gradients are the
    inference path's (which reads the windows in place), with ties (relu zeros) and -inf padding."""
    rng = np.random.default_rng(4)
    x = np.maximum(rng.standard_normal((3, 2, 9, 8)), 0).astype(np.float32)
    x[1] = np.round(x[1])
    a = {"size": list(size), "stride": list(stride), "pads": list(pads), "overhang": list(overhang)}
    k = KERNELS["maxpool2d"]
    y1, c1 = k.forward([x], {}, a, Ctx(training=True))
    y2, c2 = k.forward([x], {}, a, Ctx(training=False))
    np.testing.assert_array_equal(y1, y2)
    dy = rng.standard_normal(y1.shape).astype(np.float32)
    (d1,), _ = k.backward(dy, c1)
    (d2,), _ = k.backward(dy, c2)
    np.testing.assert_array_equal(d1, d2)
    if torch is not None:       # and PyTorch's (its padding is symmetric: pad with -inf here)
        t, l, b, r = pads
        tx = torch.tensor(np.pad(x, ((0, 0), (0, 0), (t, b + overhang[0]), (l, r + overhang[1])),
                                 constant_values=-np.inf), requires_grad=True)
        ty = F.max_pool2d(tx, size, stride)
        ty.backward(torch.tensor(dy))
        np.testing.assert_array_equal(y1, ty.detach().numpy())
        H, W = x.shape[2:]
        # overlapping windows sum their gradients in another order: rounding only
        np.testing.assert_allclose(d1, tx.grad.numpy()[:, :, t:t + H, l:l + W], rtol=1e-6, atol=1e-6)
