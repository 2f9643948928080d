"""Recurrent layers: rnn, lstm, gru; time-major inside, one matmul for the input projection
and one per weight gradient.

Each op is a stack of ``layers`` layers of one or two directions (``bidirectional``). One cell
(:class:`RNNCell`, :class:`LSTMCell`, :class:`GRUCell`) runs one direction of one layer forwards
in time; the backward direction is the same cell on the time-reversed sequence, its outputs
reversed back. Layer k + 1 reads layer k's full output sequence (both directions side by side),
through inverted dropout while training when ``dropout`` > 0 (masks drawn from ``ctx.rng`` as the
``dropout`` kernel does). The weights of direction d of layer k are the contract's names with the
suffix ``a["suffixes"][k][d]`` (set by the compiler: ``""`` for a single forward layer, else
PyTorch's ``_l{k}`` / ``_l{k}_reverse``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import Kernel, register
from .blas import small_products


class RNNCache(NamedTuple):
    xt: np.ndarray         # (T*N, F) the input, time-major
    H: np.ndarray          # (T+1, N, u) the states, H[0] = 0
    w: dict                # the direction's weights, by their single-layer names (weight_ih, ...)
    act: str               # tanh | relu
    xshape: tuple          # (N, T, F)


class LSTMCache(NamedTuple):
    xt: np.ndarray         # (T*N, F) the input, time-major
    H: np.ndarray          # (T+1, u, N) hidden states, feature-major
    C: np.ndarray          # (T+1, u, N) cell states
    A: np.ndarray          # (T, 4u, N) gate activations, order (i, f, o, g)
    TC: np.ndarray         # (T, u, N) tanh(c_t)
    w: dict
    xshape: tuple


class GRUCache(NamedTuple):
    xt: np.ndarray         # (T*N, F) the input, time-major
    H: np.ndarray          # (T+1, u, N) states, feature-major
    RZ: np.ndarray         # (T, 2u, N) reset and update gates
    NN: np.ndarray         # (T, u, N) the new gate n
    GHN: np.ndarray        # (T, u, N) W_hn h + b_hn
    w: dict
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


def _feature_major(dseq):
    """dseq (N, T, u) | None -> (T, u, N) contiguous | None: the feature-major cells' layout."""
    return None if dseq is None else np.ascontiguousarray(dseq.transpose(1, 2, 0))


def _add_output_grad(dh, ds, dlast, t, T):
    """Adds the output gradient reaching h_t to dh in place: ds[t] for every step (ds None: none),
    plus dlast (None: none) at the last step. dh, ds[t] and dlast share one layout: (N, u) for
    :class:`RNNCell`, (u, N) for the feature-major cells."""
    if ds is not None:
        dh += ds[t]
    if dlast is not None and t == T - 1:
        dh += dlast


class RNNCell:
    """Elman RNN, one direction of one layer: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),
    h_0 = 0.

    x: (N, T, F); weight_ih: (u, F); weight_hh: (u, u); bias_ih, bias_hh: (u,); act: a["activation"]
    tanh | relu. forward -> (H: (T+1, N, u) the states, H[0] = 0; cache); backward(dseq (N, T, u) |
    None, dlast (N, u) | None, cache) -> ([dx (N, T, F)], {weight: grad}): dseq reaches every
    step's state, dlast the last one's."""

    @staticmethod
    def forward(x, w, a):
        N, T, F = x.shape
        act = a["activation"]
        xt, xp = _input_projection(x, w, with_bias_hh=True)
        u = xp.shape[-1]
        whhT = w["weight_hh"].T
        H = np.zeros((T + 1, N, u), dtype=xp.dtype)
        with small_products(N * whhT.size):
            for t in range(T):
                h = H[t + 1]
                np.matmul(H[t], whhT, out=h)
                h += xp[t]
                if act == "tanh":
                    np.tanh(h, out=h)
                else:
                    np.maximum(h, 0, out=h)
        return H, RNNCache(xt, H, w, act, x.shape)

    @staticmethod
    def backward(dseq, dlast, cache: RNNCache):
        xt, H, w, act, xshape = cache
        N, T, F = xshape
        whh = w["weight_hh"]
        dA = np.empty_like(H[1:])                      # (T, N, u) grad of pre-activations
        ds = None if dseq is None else dseq.transpose(1, 0, 2)     # (T, N, u)
        dh = np.zeros_like(H[0])
        with small_products(N * whh.size):
            for t in range(T - 1, -1, -1):
                _add_output_grad(dh, ds, dlast, t, T)
                h = H[t + 1]
                da = dA[t]
                if act == "tanh":
                    np.multiply(dh, 1 - h * h, out=da)
                else:
                    np.multiply(dh, h > 0, out=da)
                dh = da @ whh
        return _recurrent_grads(dA, dA, xt, H, w, xshape)


class LSTMCell:
    """LSTM, one direction of one layer, with PyTorch's formulas and gate order (input, forget,
    cell, output), h_0 = c_0 = 0.

    x: (N, T, F); weight_ih: (4u, F); weight_hh: (4u, u); bias_ih, bias_hh: (4u,);
    forward -> (H: (T+1, N, u), cache); backward as :class:`RNNCell`."""

    # NOTE: feature-major inside: a step's state is (u, N) and its gates (4u, N), so the step's
    # product W_hh (4u, u) @ h (u, N) lands in the gate block as it is and every gate is one
    # contiguous (u, N) plane (an (N, 4u) product leaves the gates interleaved: each add or
    # activation is then a strided pass). The forward orders the gates (i, f, o, g) and negates
    # the rows of i, f, o (exact in floating point): one exp over the 3u sigmoid rows gives
    # exp(-z), and sigmoid(z) = 1 / (1 + exp(-z)) is two more in-place passes -- np.exp is about
    # 2.4x faster than np.tanh on float32, and the activations are the step's largest cost. tanh
    # stays np.tanh (g and the cell state): full precision near zero. The backward precomputes
    # every gate-derivative factor that does not depend on dh/dc over all steps at once, in
    # PyTorch's gate order (i, f, g, o), so dZ feeds the weight gradients directly. (A layout
    # with time in the middle, (4u, T, N), saves the two transposes of the weight gradients but
    # makes every per-step pass strided: measured slower.)

    @staticmethod
    def forward(x, w, a):
        N, T, F = x.shape
        wih, whh = w["weight_ih"], w["weight_hh"]
        u = whh.shape[1]
        dt = np.result_type(x.dtype, wih.dtype)
        perm = np.r_[0:2 * u, 3 * u:4 * u, 2 * u:3 * u]          # (i, f, g, o) -> (i, f, o, g)
        sign = np.ones(4 * u, dtype=dt)
        sign[:3 * u] = -1
        xt = np.ascontiguousarray(x.transpose(1, 0, 2))          # (T, N, F)
        # A starts as the input projection sign * (W_ih x_t^T + b): (T, 4u, N)
        A = np.matmul(wih[perm] * sign[:, None], xt.transpose(0, 2, 1))
        A += ((w["bias_ih"][perm] + w["bias_hh"][perm]) * sign)[:, None]
        whh_s = np.ascontiguousarray(whh[perm] * sign[:, None])   # (4u, u)
        H = np.empty((T + 1, u, N), dtype=A.dtype)
        H[0] = 0
        C = np.empty((T + 1, u, N), dtype=A.dtype)
        C[0] = 0
        TC = np.empty((T, u, N), dtype=A.dtype)        # tanh(c_t)
        hw = np.empty((4 * u, N), dtype=A.dtype)
        tmp = np.empty((u, N), dtype=A.dtype)
        # exp(-z) = inf for z < -88 (float32): sigmoid 0
        with np.errstate(over="ignore"), small_products(N * whh.size):
            for t in range(T):
                z = A[t]                               # (4u, N): the step's projection, then its gates
                if t:
                    np.matmul(whh_s, H[t], out=hw)
                    z += hw
                s = z[:3 * u]
                np.exp(s, out=s)
                s += 1
                np.divide(1, s, out=s)                 # sigmoid of i, f, o
                g = z[3 * u:]
                np.tanh(g, out=g)
                c = C[t + 1]
                np.multiply(z[u:2 * u], C[t], out=c)
                np.multiply(z[:u], g, out=tmp)
                c += tmp
                np.tanh(c, out=TC[t])
                np.multiply(z[2 * u:3 * u], TC[t], out=H[t + 1])
        return H.transpose(0, 2, 1), LSTMCache(xt.reshape(T * N, F), H, C, A, TC, w, x.shape)

    @staticmethod
    def backward(dseq, dlast, cache: LSTMCache):
        xt, H, C, A, TC, w, xshape = cache
        N, T, F = xshape
        u = H.shape[1]
        whhT = np.ascontiguousarray(w["weight_hh"].T)  # (u, 4u), PyTorch's gate order
        I, Fg, O, G = A[:, :u], A[:, u:2 * u], A[:, 2 * u:3 * u], A[:, 3 * u:]
        # factors of dZ in PyTorch's gate order: dZ = (dc * D_i, dc * D_f, dc * D_g, dh * D_o)
        D = np.empty((T, 4 * u, N), dtype=A.dtype)
        Di, Df, Dg, Do = D[:, :u], D[:, u:2 * u], D[:, 2 * u:3 * u], D[:, 3 * u:]
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
        D3 = D[:, :3 * u].reshape(T, 3, u, N)
        dZ = np.empty((T, 4 * u, N), dtype=A.dtype)
        dZ3 = dZ[:, :3 * u].reshape(T, 3, u, N)
        dsT = _feature_major(dseq)
        dh = np.zeros((u, N), dtype=A.dtype)
        dc = np.zeros((u, N), dtype=A.dtype)
        tmp = np.empty((u, N), dtype=A.dtype)
        dlT = None if dlast is None else dlast.T
        with small_products(N * whhT.size):
            for t in range(T - 1, -1, -1):
                _add_output_grad(dh, dsT, dlT, t, T)
                np.multiply(dh, P[t], out=tmp)
                dc += tmp
                np.multiply(D3[t], dc, out=dZ3[t])
                np.multiply(Do[t], dh, out=dZ[t, 3 * u:])
                if t:
                    dc *= Fg[t]
                    np.matmul(whhT, dZ[t], out=dh)
        # the weight gradients sum over (t, n): dZ as (4u, T*N), columns in xt's row order
        dZc = np.ascontiguousarray(dZ.transpose(1, 0, 2)).reshape(4 * u, T * N)
        Hc = np.ascontiguousarray(H[:-1].transpose(1, 0, 2)).reshape(u, T * N)
        dx = np.ascontiguousarray((dZc.T @ w["weight_ih"]).reshape(T, N, F).transpose(1, 0, 2))
        grads = {"weight_ih": dZc @ xt, "weight_hh": dZc @ Hc.T}
        grads["bias_ih"] = dZc.sum(axis=1)
        grads["bias_hh"] = grads["bias_ih"].copy()
        return [dx], grads


class GRUCell:
    """GRU, one direction of one layer, with PyTorch's formulas and gate order (reset, update,
    new), h_0 = 0; the reset gate is applied after the recurrent product (ONNX
    linear_before_reset=1):

        r = sig(W_ir x + b_ir + W_hr h + b_hr);  z = sig(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h' = (1 - z) * n + z * h

    x: (N, T, F); weight_ih: (3u, F); weight_hh: (3u, u); bias_ih, bias_hh: (3u,);
    forward -> (H: (T+1, N, u), cache); backward as :class:`RNNCell`."""

    # NOTE: feature-major inside, as :class:`LSTMCell`: states (u, N), gate blocks (3u, N), the
    # rows of r and z negated (exact) so their sigmoids are one exp and two in-place passes; the
    # backward precomputes the factors that do not depend on dh over all steps.

    @staticmethod
    def forward(x, w, a):
        N, T, F = x.shape
        wih, whh = w["weight_ih"], w["weight_hh"]
        u = whh.shape[1]
        sign = np.ones(3 * u, dtype=np.result_type(x.dtype, wih.dtype))
        sign[:2 * u] = -1
        xt = np.ascontiguousarray(x.transpose(1, 0, 2))          # (T, N, F)
        GI = np.matmul(wih * sign[:, None], xt.transpose(0, 2, 1))   # (T, 3u, N): sign * (W_ih x_t + b_ih)
        GI += (w["bias_ih"] * sign)[:, None]
        whh_s = np.ascontiguousarray(whh * sign[:, None])
        bhh_s = (w["bias_hh"] * sign)[:, None]
        H = np.empty((T + 1, u, N), dtype=GI.dtype)
        H[0] = 0
        RZ = np.empty((T, 2 * u, N), dtype=GI.dtype)   # r, z
        NN = np.empty((T, u, N), dtype=GI.dtype)       # n
        GH = np.empty((T, 3 * u, N), dtype=GI.dtype)   # sign * (W_hh h + b_hh); its n rows are W_hn h + b_hn
        # exp(-z) = inf: sigmoid 0
        with np.errstate(over="ignore"), small_products(N * whh.size):
            for t in range(T):
                gh = GH[t]
                np.matmul(whh_s, H[t], out=gh)
                gh += bhh_s
                rz = RZ[t]
                np.add(GI[t, :2 * u], gh[:2 * u], out=rz)
                np.exp(rz, out=rz)
                rz += 1
                np.divide(1, rz, out=rz)
                n = NN[t]
                np.multiply(rz[:u], gh[2 * u:], out=n)
                n += GI[t, 2 * u:]
                np.tanh(n, out=n)
                h = H[t + 1]                           # h' = n + z * (h - n)
                np.subtract(H[t], n, out=h)
                h *= rz[u:]
                h += n
        return H.transpose(0, 2, 1), GRUCache(xt.reshape(T * N, F), H, RZ, NN, GH[:, 2 * u:], w, x.shape)

    @staticmethod
    def backward(dseq, dlast, cache: GRUCache):
        xt, H, RZ, NN, GHN, w, xshape = cache
        N, T, F = xshape
        u = H.shape[1]
        whhT = np.ascontiguousarray(w["weight_hh"].T)  # (u, 3u)
        R, Z = RZ[:, :u], RZ[:, u:]
        # per step: dn' = dh * Zn, dr' = dn' * Rr, dz' = dh * Zz (the pre-activation gradients)
        Zn = np.subtract(1, Z)
        tmp = np.multiply(NN, NN)
        np.subtract(1, tmp, out=tmp)
        Zn *= tmp                                      # (1 - z) (1 - n^2)
        Rr = np.subtract(1, R)
        Rr *= R
        Rr *= GHN                                      # r (1 - r) (W_hn h + b_hn)
        Zz = np.subtract(1, Z)
        Zz *= Z
        np.subtract(H[:-1], NN, out=tmp)
        Zz *= tmp                                      # z (1 - z) (h - n)
        dGI = np.empty((T, 3 * u, N), dtype=H.dtype)   # grad of W_ih x + b_ih, gate order (r, z, n)
        dGH = np.empty((T, 3 * u, N), dtype=H.dtype)   # grad of W_hh h + b_hh
        dsT = _feature_major(dseq)
        dh = np.zeros((u, N), dtype=H.dtype)
        back = np.empty((u, N), dtype=H.dtype)
        dlT = None if dlast is None else dlast.T
        with small_products(N * whhT.size):
            for t in range(T - 1, -1, -1):
                _add_output_grad(dh, dsT, dlT, t, T)
                dgi, dgh = dGI[t], dGH[t]
                dn = np.multiply(dh, Zn[t], out=dgi[2 * u:])
                np.multiply(dn, Rr[t], out=dgi[:u])
                np.multiply(dh, Zz[t], out=dgi[u:2 * u])
                np.copyto(dgh[:2 * u], dgi[:2 * u])
                np.multiply(dn, R[t], out=dgh[2 * u:])
                if t:
                    np.matmul(whhT, dgh, out=back)
                    dh *= Z[t]
                    dh += back
        # the weight gradients sum over (t, n): (3u, T*N), columns in xt's row order
        dGIc = np.ascontiguousarray(dGI.transpose(1, 0, 2)).reshape(3 * u, T * N)
        dGHc = np.ascontiguousarray(dGH.transpose(1, 0, 2)).reshape(3 * u, T * N)
        Hc = np.ascontiguousarray(H[:-1].transpose(1, 0, 2)).reshape(u, T * N)
        dx = np.ascontiguousarray((dGIc.T @ w["weight_ih"]).reshape(T, N, F).transpose(1, 0, 2))
        grads = {"weight_ih": dGIc @ xt, "weight_hh": dGHc @ Hc.T,
                 "bias_ih": dGIc.sum(axis=1), "bias_hh": dGHc.sum(axis=1)}
        return [dx], grads


# ----------------------------------------------------------------------------------------------
# the layer stack: directions, layers, dropout between them

_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class StackCache(NamedTuple):
    caches: list           # per layer, per direction: the cell's cache
    masks: list            # per layer: the scaled dropout mask (N, T, D*u) applied to its input, or None
    suffixes: list         # a["suffixes"]: per layer, per direction, the weight names' suffix
    u: int                 # units
    seq: bool              # return_sequences


class Recurrent(Kernel):
    """``layers`` stacked layers of ``cell``, each forward or forward and backward in time.

    x: (N, T, F); weights ``weight_ih{s}`` (G*u, F_k), ``weight_hh{s}`` (G*u, u), ``bias_ih{s}``,
    ``bias_hh{s}`` (G*u,) for each suffix s of ``a["suffixes"]`` (layer k, direction d), F_0 = F,
    F_k = D*u. y: (N, D*u) = [forward h after step T-1, backward h after its last step (at t = 0)],
    PyTorch's h_n of the last layer; or (N, T, D*u) with return_sequences, each step's forward and
    backward states side by side, PyTorch's output. Layer k >= 1 reads layer k-1's sequence times
    an inverted dropout mask while training with ``dropout`` > 0."""

    cell: type = RNNCell

    # NOTE: each cell runs its loop of per-step products (G*u, u) x (u, N) with one BLAS thread
    # (small_products: the hand-off to a second thread costs more than such a product); the
    # products over all steps at once (the input projection, the weight gradients) keep the BLAS's
    # own threads, as every other layer's products do.

    def forward(self, xs, w, a, ctx):
        inp = xs[0]
        u, seq, rate = a["units"], a["return_sequences"], float(a["dropout"])
        suffixes = a["suffixes"]
        caches, masks = [], []
        for k, sfx in enumerate(suffixes):
            mask = None
            if k and ctx.training and rate > 0.0:
                keep = ctx.rng.random(inp.shape) >= rate
                mask = keep.astype(inp.dtype) * (1 / (1 - rate))   # (N, T, D*u), already scaled
                inp = inp * mask
            masks.append(mask)
            last = k == len(suffixes) - 1
            layer_caches, outs = [], []
            for d, s in enumerate(sfx):
                wd = {n: w[n + s] for n in _NAMES}
                H, cache = self.cell.forward(inp if d == 0 else inp[:, ::-1], wd, a)
                layer_caches.append(cache)
                if last and not seq:
                    outs.append(H[-1])                        # (N, u): the state after the direction's last step
                else:
                    hs = H[1:].transpose(1, 0, 2)             # (N, T, u), in the direction's own time order
                    outs.append(hs if d == 0 else hs[:, ::-1])
            caches.append(layer_caches)
            # NOTE: a copy either way: the output never aliases a cache
            inp = np.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0].copy()
        return inp, StackCache(caches, masks, suffixes, u, seq)

    def backward(self, dy, cache: StackCache):
        caches, masks, suffixes, u, seq = cache
        grads: dict = {}
        dseq, dlast = (dy, None) if seq else (None, dy)
        dx = None
        for k in range(len(caches) - 1, -1, -1):
            dx = None
            for d, (c, s) in enumerate(zip(caches[k], suffixes[k])):
                part = slice(d * u, (d + 1) * u)
                ds = None if dseq is None else (dseq[..., part] if d == 0 else dseq[:, ::-1, part])
                dl = None if dlast is None else dlast[:, part]
                (dxd,), g = self.cell.backward(ds, dl, c)
                if d:
                    dxd = dxd[:, ::-1]
                dx = dxd if dx is None else dx + dxd
                for n, arr in g.items():
                    grads[n + s] = arr
            if masks[k] is not None:
                dx = dx * masks[k]
            dseq, dlast = dx, None
        return [np.ascontiguousarray(dx)], grads


@register("rnn")
class RNN(Recurrent):
    cell = RNNCell


@register("lstm")
class LSTM(Recurrent):
    cell = LSTMCell


@register("gru")
class GRU(Recurrent):
    cell = GRUCell
