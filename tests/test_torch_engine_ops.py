"""The torch engine's lowerings against the NumPy kernels, op by op, on the kernels' case table.

For every case of ``tests/test_kernels.py`` (``CASES``: every op of the catalogue, with its edge
cases: grouped and transposed convolutions, SAME_UPPER padding, pools with ceil_mode overhang,
bidirectional and stacked recurrent layers with dropout, self/causal/cross attention, broadcasting
merges...), in float64: the lowering's output equals the kernel's, and so do the gradients of every
float input and every trainable weight (the seed gradient R is random), and the state a training
forward updates (batchnorm's running statistics). Dropout masks come from nnc's generator seeded
alike on both sides, so training cases (dropout, recurrent and attention dropout) compare exactly.
One case per op also runs in float32 (the dtype is kept) and with an empty batch (a data-parallel
share with no rows; batchnorm's training forward on such a share is tested with two processes).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nnc.compiler.ops import OPS
from nnc.runtime.kernels import KERNELS, Ctx
from nnc.torch.lowerings import LOWERINGS, RunContext

from test_kernels import CASES, _id, batchnorm

RTOL, ATOL = 1e-10, 1e-12


def _numpy(case, xs, w, seed=1):
    w = {k: v.copy() for k, v in w.items()}
    y, cache = KERNELS[case.op].forward(xs, w, case.a, Ctx(training=case.training, rng=np.random.default_rng(seed)))
    return y, cache, w


def _torch(case, xs, w, seed=1):
    ctx = RunContext()
    ctx.rng, ctx.batch = np.random.default_rng(seed), xs[0].shape[0]
    layer = LOWERINGS[case.op](case.op, case.a, w, set(case.trainable), ctx)
    layer.train(case.training)
    ts = [torch.tensor(x, requires_grad=x.dtype.kind == "f") for x in xs]
    return layer, ts, layer(*ts)


#: one case per op (the first of its rows), for the checks that do not depend on the edge cases
FIRST = list({c.op: c for c in reversed(CASES)}.values())


def test_every_op_has_a_case():
    assert {c.op for c in CASES} == set(OPS)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_lowering_equals_the_kernel(case):
    label = _id(case)
    xs, w = case.make(seed=0)
    y, cache, w_after = _numpy(case, xs, w)
    layer, ts, yt = _torch(case, xs, w)
    assert tuple(yt.shape) == y.shape, f"{label}: forward shape"
    np.testing.assert_allclose(yt.detach().numpy(), y, rtol=RTOL, atol=ATOL, err_msg=f"{label}: forward")
    state = dict(layer.named_buffers())
    for name, value in state.items():             # running statistics updated alike (or left alone)
        np.testing.assert_allclose(value.numpy(), w_after[name], rtol=RTOL, atol=ATOL, err_msg=f"{label}: {name}")

    R = np.random.default_rng(99).standard_normal(y.shape)
    dxs, dw = KERNELS[case.op].backward(R.copy(), cache)
    yt.backward(torch.tensor(R))
    for i, (x, t) in enumerate(zip(xs, ts)):
        if x.dtype.kind != "f":
            continue
        np.testing.assert_allclose(t.grad.numpy(), dxs[i], rtol=1e-9, atol=1e-11,
                                   err_msg=f"{label}: backward of input {i}")
    params = dict(layer.named_parameters())
    assert set(params) == set(case.trainable), f"{label}: parameters {sorted(params)}"
    assert set(params) | set(state) == set(w), f"{label}: every weight is a parameter or state"
    for name in case.trainable:
        np.testing.assert_allclose(params[name].grad.numpy(), dw[name], rtol=1e-9, atol=1e-11,
                                   err_msg=f"{label}: backward of {name}")


@pytest.mark.parametrize("case", FIRST, ids=_id)
def test_float32_stays_float32_and_agrees(case):
    xs, w = case.make(seed=0, dtype=np.float32)
    y, _, _ = _numpy(case, xs, w)
    _, _, yt = _torch(case, xs, w)
    assert yt.dtype == torch.float32, _id(case)
    np.testing.assert_allclose(yt.detach().numpy(), y, rtol=2e-5, atol=2e-6, err_msg=_id(case))


@pytest.mark.parametrize("case", [c for c in FIRST if c.op != "batchnorm"] + [c for c in CASES if c.op == "batchnorm"
                                                                            and not c.training][:1], ids=_id)
def test_an_empty_batch_runs(case):
    """A process whose share of a batch is empty still runs forward and backward (zero gradients)."""
    xs, w = case.make(seed=0)
    xs = [x[:0] for x in xs]
    layer, ts, yt = _torch(case, xs, w)
    assert yt.shape[0] == 0
    yt.sum().backward()
    for p in layer.parameters():
        assert p.grad is None or not p.grad.any()


BATCHNORM_TRAINING = [c for c in CASES if c.op == "batchnorm" and c.training]


@pytest.mark.parametrize("case", BATCHNORM_TRAINING + [batchnorm("N1-train", (1, 4), True)], ids=_id)
def test_the_global_batchnorm_equals_the_kernel(case):
    """The batchnorm that data-parallel training runs (statistics all-reduced over the processes;
    here one process, where it also serves a batch of one value per channel): forward, gradients
    and running statistics equal the kernel's."""
    from nnc.torch.lowerings import _GlobalBatchNorm
    xs, w = case.make(seed=0)
    y, cache, w_after = _numpy(case, xs, w)
    ctx = RunContext()
    x = torch.tensor(xs[0], requires_grad=True)
    weight, bias = (torch.tensor(w[k], requires_grad=True) for k in ("weight", "bias"))
    rm, rv = torch.tensor(w["running_mean"]), torch.tensor(w["running_var"])
    count = x.numel() // x.shape[1]
    yt = _GlobalBatchNorm.apply(x, weight, bias, rm, rv, case.a["momentum"], case.a["eps"], count, ctx)
    np.testing.assert_allclose(yt.detach().numpy(), y, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(rm.numpy(), w_after["running_mean"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(rv.numpy(), w_after["running_var"], rtol=RTOL, atol=ATOL)
    R = np.random.default_rng(99).standard_normal(y.shape)
    (dx,), dw = KERNELS["batchnorm"].backward(R.copy(), cache)
    yt.backward(torch.tensor(R))
    np.testing.assert_allclose(x.grad.numpy(), dx, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(weight.grad.numpy(), dw["weight"], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(bias.grad.numpy(), dw["bias"], rtol=1e-9, atol=1e-11)


def test_a_batch_of_one_through_batchnorm_in_one_process():
    """F.batch_norm refuses one value per channel; the lowering then takes the global path, as
    the NumPy kernel uses the biased variance (0)."""
    case = batchnorm("N1", (1, 4), True)
    xs, w = case.make(seed=0)
    y, _, w_after = _numpy(case, xs, w)
    layer, _, yt = _torch(case, xs, w)
    np.testing.assert_allclose(yt.detach().numpy(), y, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(layer.running_var.numpy(), w_after["running_var"], rtol=RTOL, atol=ATOL)
