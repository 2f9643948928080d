"""The depthwise and 1x1 conv2d paths (nnc/runtime/kernels/depthwise.py) against the general im2col
path: the same outputs and gradients to float64 rounding."""
from __future__ import annotations

import numpy as np
import pytest

from nnc.runtime.kernels import conv as C
from nnc.runtime.kernels import depthwise as D


def _general_backward(dy, cache, need_dx=True):
    return C._conv2d_backward(dy, cache, need_dx)


def _both(x, w, b, stride, dilation, pads, groups, dy_seed=1):
    y, cache = C._conv2d_forward(x, w, b, stride, dilation, pads, groups)
    y0, cache0 = C._conv2d_forward_im2col(x, w, b, stride, dilation, pads, groups)
    dy = np.random.default_rng(dy_seed).standard_normal(y0.shape)
    return (y, C._conv2d_backward(dy, cache), cache), (y0, C._conv2d_backward(dy, cache0), cache0), dy


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


DEPTHWISE = [
    # (C, H, W, kh, kw, stride, dilation, pads)
    (3, 7, 9, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
    (4, 8, 8, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1)),
    (2, 9, 7, 3, 2, (1, 1), (2, 1), (2, 0, 1, 1)),
    (3, 6, 10, 5, 3, (2, 1), (1, 2), (0, 3, 2, 1)),
    (2, 6, 6, 3, 3, (1, 1), (1, 1), (3, 0, 3, 2)),    # padding beyond the kernel's extent: scatter dx
    (5, 5, 5, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0)),
    (2, 9, 9, 3, 3, (3, 2), (2, 2), (1, 2, 0, 1)),
]


@pytest.mark.parametrize("case", DEPTHWISE)
@pytest.mark.parametrize("bias", [False, True])
def test_depthwise_matches_im2col(case, bias):
    c, h, w_, kh, kw, stride, dilation, pads = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, c, h, w_))
    w = rng.standard_normal((c, 1, kh, kw))
    b = rng.standard_normal(c) if bias else None
    (y, (dx, dw, db), cache), (y0, (dx0, dw0, db0), _), dy = _both(x, w, b, stride, dilation, pads, c)
    assert isinstance(cache, D.DepthwiseCache)
    assert y.shape == y0.shape and dx.shape == x.shape and dw.shape == w.shape
    _close(y, y0)
    _close(dx, dx0)
    _close(dw, dw0)
    if bias:
        _close(db, db0)
    else:
        assert db is None and db0 is None
    none, dw1, _ = C._conv2d_backward(dy, cache, need_dx=False)
    assert none is None
    _close(dw1, dw0)


def test_depthwise_chunks_cover_every_sample(monkeypatch):
    """Chunks of a few samples (the last one short) give the one-chunk result."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 4, 6, 6))
    w = rng.standard_normal((4, 1, 3, 3))
    y, cache = D.depthwise_forward(x, w, None, (1, 1), (1, 1), (1, 1, 1, 1))
    dy = rng.standard_normal(y.shape)
    dx, dw, _ = D.depthwise_backward(dy, cache)
    monkeypatch.setattr(D, "CHUNK", 4 * 8 * 6 * 3)          # 3 samples a chunk: 3 + 3 + 1
    y2, cache2 = D.depthwise_forward(x, w, None, (1, 1), (1, 1), (1, 1, 1, 1))
    dx2, dw2, _ = D.depthwise_backward(dy, cache2)
    _close(y2, y)
    _close(dx2, dx)
    _close(dw2, dw)


def test_grouped_but_not_depthwise_takes_im2col():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 5, 5))
    y, cache = C._conv2d_forward(x, rng.standard_normal((8, 1, 3, 3)), None, (1, 1), (1, 1), (1, 1, 1, 1), 4)
    assert isinstance(cache, C.ConvCache)                    # a channel multiplier of 2
    y, cache = C._conv2d_forward(x, rng.standard_normal((4, 2, 3, 3)), None, (1, 1), (1, 1), (1, 1, 1, 1), 2)
    assert isinstance(cache, C.ConvCache)


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (2, 3)])
@pytest.mark.parametrize("bias", [False, True])
def test_pointwise_matches_im2col(stride, bias):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 7, 8))
    w = rng.standard_normal((6, 5, 1, 1))
    b = rng.standard_normal(6) if bias else None
    (y, (dx, dw, db), cache), (y0, (dx0, dw0, db0), _), dy = _both(x, w, b, stride, (1, 1), (0, 0, 0, 0), 1)
    assert isinstance(cache, D.PointwiseCache)
    _close(y, y0)
    _close(dx, dx0)
    _close(dw, dw0)
    if bias:
        _close(db, db0)
    none, dw1, _ = C._conv2d_backward(dy, cache, need_dx=False)
    assert none is None
    _close(dw1, dw0)


def test_padded_1x1_takes_im2col():
    x = np.ones((1, 2, 3, 3))
    _, cache = C._conv2d_forward(x, np.ones((2, 2, 1, 1)), None, (1, 1), (1, 1), (1, 1, 1, 1), 1)
    assert isinstance(cache, C.ConvCache)


def test_depthwise_conv1d_kernel_matches_im2col():
    """conv1d runs as conv2d with H = 1: the depthwise path serves it too."""
    from nnc.runtime.kernels import KERNELS
    from nnc.runtime.kernels.base import Ctx
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 11))
    w = {"weight": rng.standard_normal((3, 1, 3)), "bias": rng.standard_normal(3)}
    a = {"stride": [2], "dilation": [1], "pads": [1, 2], "bias": True, "groups": 3}
    k = KERNELS["conv1d"]
    y, cache = k.forward([x], w, a, Ctx())
    assert isinstance(cache, D.DepthwiseCache)
    y0, cache0 = C._conv2d_forward_im2col(x[:, :, None, :], w["weight"][:, :, None, :], w["bias"], (1, 2), (1, 1),
                                          (0, 1, 0, 2), 3)
    _close(y, y0[:, :, 0, :])
    dy = rng.standard_normal(y.shape)
    (dx,), g = k.backward(dy, cache)
    dx0, dw0, db0 = C._conv2d_backward(dy[:, :, None, :], cache0)
    _close(dx, dx0[:, :, 0, :])
    _close(g["weight"], dw0[:, :, 0, :])
    _close(g["bias"], db0)


def test_float32_stays_float32():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    for w, g in ((rng.standard_normal((4, 1, 3, 3)).astype(np.float32), 4),
                 (rng.standard_normal((3, 4, 1, 1)).astype(np.float32), 1)):
        y, cache = C._conv2d_forward(x, w, np.ones(w.shape[0], np.float32), (1, 1), (1, 1),
                                     (1, 1, 1, 1) if g > 1 else (0, 0, 0, 0), g)
        dx, dw, db = C._conv2d_backward(np.ones_like(y), cache)
        assert y.dtype == dx.dtype == dw.dtype == db.dtype == np.float32
