"""Recurrent layers: rnn, lstm, gru; time-major inside, one matmul for the input projection
and one per weight gradient."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import Kernel, register
from .special import sigmoid


class RNNCache(NamedTuple):
    xt: np.ndarray         # (T*N, F) the input, time-major
    H: np.ndarray          # (T+1, N, u) the states, H[0] = 0
    w: dict                # the layer's weights
    a: dict                # its attrs
    act: str               # tanh | relu
    xshape: tuple          # (N, T, F)


class LSTMCache(NamedTuple):
    xt: np.ndarray         # (T*N, F)
    H: np.ndarray          # (T+1, N, u) hidden states
    C: np.ndarray          # (T+1, N, u) cell states
    A: np.ndarray          # (T, 4, N, u) gate activations, planar, order (i, f, o, g)
    TC: np.ndarray         # (T, N, u) tanh(c_t)
    w: dict
    a: dict
    xshape: tuple


class GRUCache(NamedTuple):
    xt: np.ndarray         # (T*N, F)
    H: np.ndarray          # (T+1, N, u)
    RZ: np.ndarray         # (T, N, 2u) reset and update gates
    NN: np.ndarray         # (T, N, u) the new gate n
    GHN: np.ndarray        # (T, N, u) W_hn h + b_hn
    w: dict
    a: dict
    xshape: tuple


def _input_projection(x, w, with_bias_hh: bool):
    """x: (N, T, F) -> (xt: (T*N, F) time-major copy, xp: (T, N, G*u) = x W_ih^T + b_ih [+ b_hh])."""
    N, T, F = x.shape
    xt = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(T * N, F)
    xp = xt @ w["weight_ih"].T
    xp += w["bias_ih"]
    if with_bias_hh:
        xp += w["bias_hh"]
    return xt, xp.reshape(T, N, -1)


def _recurrent_grads(dG, dGh, xt, H, w, xshape):
    """Shared tail of the recurrent backwards.

    dG: (T, N, G*u) gradient of the input projection; dGh: (T, N, G*u) of the recurrent
    projection (same array as dG when the biases add identically); xt: (T*N, F); H: (T+1, N, u)."""
    N, T, F = xshape
    Gu = dG.shape[-1]
    dG2 = dG.reshape(T * N, Gu)
    dGh2 = dGh.reshape(T * N, Gu)
    dx = np.ascontiguousarray((dG2 @ w["weight_ih"]).reshape(T, N, F).transpose(1, 0, 2))
    grads = {"weight_ih": dG2.T @ xt,
             "weight_hh": dGh2.T @ H[:-1].reshape(T * N, -1)}
    grads["bias_ih"] = dG2.sum(axis=0)
    grads["bias_hh"] = grads["bias_ih"].copy() if dGh is dG else dGh2.sum(axis=0)
    return [dx], grads


def _output(H, a):
    """H: (T+1, N, u) -> (N, T, u) if return_sequences else (N, u)."""
    if a["return_sequences"]:
        return np.ascontiguousarray(H[1:].transpose(1, 0, 2))
    return H[-1].copy()


def _dy_at(dy, t, T, seq):
    """The output gradient reaching h_t: dy (N, T, u) if seq else (N, u) at the last step only."""
    if seq:
        return dy[:, t]
    return dy if t == T - 1 else None


@register("rnn")
class RNN(Kernel):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), h_0 = 0.

    x: (N, T, F); weight_ih: (u, F); weight_hh: (u, u); bias_ih, bias_hh: (u,);
    y: (N, u) = h_T or (N, T, u) with return_sequences. act: a["activation"] tanh | relu."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        N, T, F = x.shape
        act = a["activation"]
        xt, xp = _input_projection(x, w, with_bias_hh=True)
        u = xp.shape[-1]
        whhT = w["weight_hh"].T
        H = np.zeros((T + 1, N, u), dtype=xp.dtype)
        for t in range(T):
            h = H[t + 1]
            np.matmul(H[t], whhT, out=h)
            h += xp[t]
            if act == "tanh":
                np.tanh(h, out=h)
            else:
                np.maximum(h, 0, out=h)
        return _output(H, a), RNNCache(xt, H, w, a, act, x.shape)

    def backward(self, dy, cache: RNNCache):
        xt, H, w, a, act, xshape = cache
        N, T, F = xshape
        seq = a["return_sequences"]
        whh = w["weight_hh"]
        dA = np.empty_like(H[1:])                      # (T, N, u) grad of pre-activations
        dh = np.zeros_like(H[0])
        for t in range(T - 1, -1, -1):
            g = _dy_at(dy, t, T, seq)
            if g is not None:
                dh = dh + g
            h = H[t + 1]
            da = dA[t]
            if act == "tanh":
                np.multiply(dh, 1 - h * h, out=da)
            else:
                np.multiply(dh, h > 0, out=da)
            dh = da @ whh
        return _recurrent_grads(dA, dA, xt, H, w, xshape)


@register("lstm")
class LSTM(Kernel):
    """LSTM with PyTorch's formulas and gate order (input, forget, cell, output), h_0 = c_0 = 0.

    x: (N, T, F); weight_ih: (4u, F); weight_hh: (4u, u); bias_ih, bias_hh: (4u,);
    y: (N, u) = h_T or (N, T, u) with return_sequences."""

    # NOTE: the forward keeps the gates planar, A: (T, 4, N, u), in the order (i, f, o, g), with
    # the weight rows (and biases) of i, f, o scaled by 0.5 (exact in binary floating point): one
    # in-place tanh over a step's 4 gate planes gives tanh(g) and tanh(z/2) for the rest, and
    # sigmoid(z) = 0.5 * tanh(z/2) + 0.5 is two in-place passes over one contiguous block. Every
    # per-step elementwise op then runs on contiguous (N, u) planes without temporaries. The
    # backward writes dZ in PyTorch's interleaved order (it feeds the weight gradients directly)
    # and precomputes every gate-derivative factor that does not depend on dh/dc over all steps
    # at once, leaving four small ufuncs and one matmul per step.

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        N, T, F = x.shape
        wih, whh = w["weight_ih"], w["weight_hh"]
        u = whh.shape[1]
        dt = np.result_type(x.dtype, wih.dtype)
        perm = np.r_[0:2 * u, 3 * u:4 * u, 2 * u:3 * u]          # (i, f, g, o) -> (i, f, o, g)
        scale = np.ones(4 * u, dtype=dt)
        scale[:3 * u] = 0.5
        xt = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(T * N, F)
        xp = xt @ (wih[perm] * scale[:, None]).T                  # (T*N, 4u): x W_ih^T + b
        xp += (w["bias_ih"][perm] + w["bias_hh"][perm]) * scale
        xp = xp.reshape(T, N, 4, u)
        whhT = np.ascontiguousarray((whh[perm] * scale[:, None]).T)      # (u, 4u)
        A = np.empty((T, 4, N, u), dtype=xp.dtype)    # gate activations, planar
        H = np.empty((T + 1, N, u), dtype=xp.dtype)
        H[0] = 0
        C = np.empty((T + 1, N, u), dtype=xp.dtype)
        C[0] = 0
        TC = np.empty((T, N, u), dtype=xp.dtype)       # tanh(c_t)
        hw = np.empty((N, 4, u), dtype=xp.dtype)
        hw2 = hw.reshape(N, 4 * u)
        hwp = hw.transpose(1, 0, 2)
        tmp = np.empty((N, u), dtype=xp.dtype)
        for t in range(T):
            z = A[t]
            if t:
                np.matmul(H[t], whhT, out=hw2)
                np.add(xp[t].transpose(1, 0, 2), hwp, out=z)
            else:
                np.copyto(z, xp[0].transpose(1, 0, 2))
            np.tanh(z, out=z)
            s = z[:3]
            s *= 0.5
            s += 0.5
            c = C[t + 1]
            np.multiply(z[1], C[t], out=c)
            np.multiply(z[0], z[3], out=tmp)
            c += tmp
            np.tanh(c, out=TC[t])
            np.multiply(z[2], TC[t], out=H[t + 1])
        return _output(H, a), LSTMCache(xt, H, C, A, TC, w, a, x.shape)

    def backward(self, dy, cache: LSTMCache):
        xt, H, C, A, TC, w, a, xshape = cache
        N, T, F = xshape
        u = H.shape[-1]
        seq = a["return_sequences"]
        whh = w["weight_hh"]
        I, Fg, O, G = A[:, 0], A[:, 1], A[:, 2], A[:, 3]
        # factors of dZ in PyTorch's gate order: dZ = (dc * D_i, dc * D_f, dc * D_g, dh * D_o)
        D = np.empty((T, 4, N, u), dtype=A.dtype)
        Di, Df, Dg, Do = D[:, 0], D[:, 1], D[:, 2], D[:, 3]
        np.subtract(1, I, out=Di)
        Di *= I
        Di *= G                                        # g * i * (1 - i)
        np.subtract(1, Fg, out=Df)
        Df *= Fg
        Df *= C[:-1]                                   # c_{t-1} * f * (1 - f)
        np.multiply(G, G, out=Dg)
        np.subtract(1, Dg, out=Dg)
        Dg *= I                                        # i * (1 - g^2)
        np.subtract(1, O, out=Do)
        Do *= O
        Do *= TC                                       # tanh(c) * o * (1 - o)
        P = np.multiply(TC, TC)
        np.subtract(1, P, out=P)
        P *= O                                         # dc_t += dh_t * o * (1 - tanh(c)^2)
        dZ = np.empty((T, N, 4 * u), dtype=A.dtype)
        dZp = dZ.reshape(T, N, 4, u).transpose(0, 2, 1, 3)   # planar view (T, 4, N, u)
        dh = np.zeros((N, u), dtype=A.dtype)
        dc = np.zeros((N, u), dtype=A.dtype)
        tmp = np.empty((N, u), dtype=A.dtype)
        for t in range(T - 1, -1, -1):
            gy = _dy_at(dy, t, T, seq)
            if gy is not None:
                dh += gy
            np.multiply(dh, P[t], out=tmp)
            dc += tmp
            np.multiply(D[t, :3], dc, out=dZp[t, :3])
            np.multiply(Do[t], dh, out=dZp[t, 3])
            if t:
                dc *= Fg[t]
                np.matmul(dZ[t], whh, out=dh)
        return _recurrent_grads(dZ, dZ, xt, H, w, xshape)


@register("gru")
class GRU(Kernel):
    """GRU with PyTorch's formulas and gate order (reset, update, new), h_0 = 0; the reset gate is
    applied after the recurrent product (ONNX linear_before_reset=1):

        r = sig(W_ir x + b_ir + W_hr h + b_hr);  z = sig(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h' = (1 - z) * n + z * h

    x: (N, T, F); weight_ih: (3u, F); weight_hh: (3u, u); bias_ih, bias_hh: (3u,);
    y: (N, u) = h_T or (N, T, u) with return_sequences."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        N, T, F = x.shape
        xt, gi = _input_projection(x, w, with_bias_hh=False)   # (T, N, 3u)
        u = gi.shape[-1] // 3
        whhT = w["weight_hh"].T
        bhh = w["bias_hh"]
        H = np.zeros((T + 1, N, u), dtype=gi.dtype)
        RZ = np.empty((T, N, 2 * u), dtype=gi.dtype)   # r, z
        NN = np.empty((T, N, u), dtype=gi.dtype)       # n
        GHN = np.empty((T, N, u), dtype=gi.dtype)      # W_hn h + b_hn
        for t in range(T):
            gh = H[t] @ whhT
            gh += bhh
            rz = RZ[t]
            rz[...] = sigmoid(gi[t, :, :2 * u] + gh[:, :2 * u])
            r, z = rz[:, :u], rz[:, u:]
            GHN[t] = gh[:, 2 * u:]
            n = NN[t]
            np.multiply(r, GHN[t], out=n)
            n += gi[t, :, 2 * u:]
            np.tanh(n, out=n)
            # h' = n + z * (h - n)
            np.subtract(H[t], n, out=H[t + 1])
            H[t + 1] *= z
            H[t + 1] += n
        return _output(H, a), GRUCache(xt, H, RZ, NN, GHN, w, a, x.shape)

    def backward(self, dy, cache: GRUCache):
        xt, H, RZ, NN, GHN, w, a, xshape = cache
        N, T, F = xshape
        u = H.shape[-1]
        seq = a["return_sequences"]
        whh = w["weight_hh"]
        dGI = np.empty((T, N, 3 * u), dtype=H.dtype)   # grad of x W_ih^T + b_ih
        dGH = np.empty((T, N, 3 * u), dtype=H.dtype)   # grad of h W_hh^T + b_hh
        dh = np.zeros_like(H[0])
        for t in range(T - 1, -1, -1):
            gy = _dy_at(dy, t, T, seq)
            if gy is not None:
                dh = dh + gy
            r, z = RZ[t, :, :u], RZ[t, :, u:]
            n = NN[t]
            dnp = dh * (1 - z) * (1 - n * n)           # grad of n's pre-activation
            drp = dnp * GHN[t] * r * (1 - r)
            dzp = dh * (H[t] - n) * z * (1 - z)
            dgi, dgh = dGI[t], dGH[t]
            dgi[:, :u] = drp
            dgi[:, u:2 * u] = dzp
            dgi[:, 2 * u:] = dnp
            dgh[:, :2 * u] = dgi[:, :2 * u]
            np.multiply(dnp, r, out=dgh[:, 2 * u:])
            dh = dh * z + dgh @ whh
        return _recurrent_grads(dGI, dGH, xt, H, w, xshape)
