"""Cross-check losses, optimizers and schedules against PyTorch itself (skipped without torch)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nnc import vocab  # noqa: E402
from nnc.runtime.losses import loss_and_grad  # noqa: E402
from nnc.runtime.optimizers import make_optimizer  # noqa: E402
from nnc.runtime.schedules import make_schedule  # noqa: E402

TOL = {np.float32: dict(rtol=2e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def _torch_optimizer(kind, params, hyper):
    h = vocab.OPTIMIZERS.validate(kind, hyper)  # the defaults, from their one declaration
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.0, momentum=h["momentum"], nesterov=h["nesterov"],
                               weight_decay=h["weight_decay"], foreach=False)
    if kind in ("adam", "adamw"):
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        return cls(params, lr=0.0, betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                   weight_decay=h["weight_decay"], foreach=False)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=0.0, alpha=h["rho"], eps=h["eps"], momentum=h["momentum"],
                                   foreach=False)
    return torch.optim.Adagrad(params, lr=0.0, foreach=False)


CASES = [
    ("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("sgd", {"momentum": 0.5, "weight_decay": 0.05}),
    ("adam", {}), ("adam", {"weight_decay": 0.1}), ("adam", {"beta1": 0.3, "beta2": 0.9}),
    ("adamw", {}), ("adamw", {"weight_decay": 0.2}),
    ("rmsprop", {}), ("rmsprop", {"momentum": 0.9}), ("rmsprop", {"rho": 0.5, "momentum": 0.3}),
    ("adagrad", {}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,hyper", CASES, ids=[f"{k}-{h}" for k, h in CASES])
def test_optimizer_matches_torch(kind, hyper, dtype):
    rng = np.random.default_rng(0)
    ours = {"w": rng.normal(size=(5, 4)).astype(dtype), "b": rng.normal(size=(5,)).astype(dtype)}
    theirs = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in ours.items()}
    opt = make_optimizer(kind, ours, hyper)
    topt = _torch_optimizer(kind, list(theirs.values()), hyper)
    for step, lr in enumerate([0.05, 0.05, 0.02, 0.1, 0.01, 0.03, 0.03, 0.04]):
        g_rng = np.random.default_rng(10 + step)
        grads = {k: (0.5 * v - 0.3 + g_rng.normal(size=v.shape)).astype(dtype)
                 for k, v in ours.items()}
        opt.step(grads, lr)
        for group in topt.param_groups:
            group["lr"] = lr
        for k, p in theirs.items():
            p.grad = torch.tensor(grads[k])
        topt.step()
        for k in ours:
            np.testing.assert_allclose(ours[k], theirs[k].detach().numpy(), **TOL[dtype],
                                       err_msg=f"{kind} {hyper} step {step} {k}")


def _torch_loss(kind, z, y, params):
    params = vocab.LOSSES.validate(kind, params)
    zt = torch.tensor(z, requires_grad=True)
    yt = torch.tensor(y)
    if kind == "cross_entropy":
        # our class axis is last; torch's is 1
        zz = zt if z.ndim == 2 else zt.movedim(-1, 1)
        yy = yt if y.shape != z.shape or z.ndim == 2 else yt.movedim(-1, 1)
        loss = torch.nn.functional.cross_entropy(zz, yy, label_smoothing=params["label_smoothing"])
    elif kind == "binary_cross_entropy":
        loss = torch.nn.functional.binary_cross_entropy_with_logits(zt, yt)
    elif kind == "huber":
        loss = torch.nn.functional.huber_loss(zt, yt, delta=params["delta"])
    elif kind == "mae":
        loss = torch.nn.functional.l1_loss(zt, yt)
    else:
        loss = torch.nn.functional.mse_loss(zt, yt)
    loss.backward()
    return loss.item(), zt.grad.numpy()


def _loss_cases():
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        z = (rng.normal(size=(6, 3)) * 2).astype(dtype)
        y = rng.normal(size=(6, 3)).astype(dtype)
        yield "mse", {}, z, y
        yield "mae", {}, z, y
        yield "huber", {}, z, y
        yield "huber", {"delta": 0.3}, z, y
        yield "binary_cross_entropy", {}, z, rng.uniform(0, 1, (6, 3)).astype(dtype)
        for ls in (0.0, 0.2):
            yield "cross_entropy", {"label_smoothing": ls}, z, rng.integers(0, 3, 6)
            yield "cross_entropy", {"label_smoothing": ls}, z, \
                rng.dirichlet(np.ones(3), 6).astype(dtype)
            z3 = rng.normal(size=(2, 4, 5)).astype(dtype)
            yield "cross_entropy", {"label_smoothing": ls}, z3, rng.integers(0, 5, (2, 4))
            yield "cross_entropy", {"label_smoothing": ls}, z3, \
                rng.dirichlet(np.ones(5), (2, 4)).astype(dtype)
        yield "cross_entropy", {}, np.array([[1000.0, -1000.0], [-1000, 1000]], dtype), np.array([1, 1])


@pytest.mark.parametrize("kind,params,z,y", list(_loss_cases()))
def test_loss_matches_torch(kind, params, z, y):
    loss, grad = loss_and_grad(kind, params, z, y)
    tloss, tgrad = _torch_loss(kind, z, y, params)
    tol = TOL[z.dtype.type]
    assert loss == pytest.approx(tloss, rel=max(tol["rtol"], 1e-6 if z.dtype == np.float32 else 0),
                                 abs=1e-6 if z.dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(grad, tgrad, rtol=1e-5 if z.dtype == np.float32 else 1e-10,
                               atol=1e-7 if z.dtype == np.float32 else 1e-14)


def _torch_lrs(make_sched, epochs, losses=None):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make_sched(opt)
    out = []
    for e in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if losses is None:
            sched.step()
        else:
            sched.step(losses[e])
    return out


def test_schedules_match_torch():
    S = torch.optim.lr_scheduler
    n = 12
    cases = [
        (("step", {"every": 3, "gamma": 0.5}), lambda o: S.StepLR(o, step_size=3, gamma=0.5)),
        (("exponential", {"gamma": 0.8}), lambda o: S.ExponentialLR(o, gamma=0.8)),
        (("cosine", {"min_lr": 0.001}), lambda o: S.CosineAnnealingLR(o, T_max=n, eta_min=0.001)),
    ]
    for (kind, params), make in cases:
        s = make_schedule(kind, params, 0.1, n)
        np.testing.assert_allclose([s.lr(e) for e in range(n)], _torch_lrs(make, n), rtol=1e-12,
                                   err_msg=kind)


def test_plateau_matches_torch():
    rng = np.random.default_rng(1)
    losses = list(1.0 / np.arange(1, 31) + rng.uniform(0, 0.06, 30))
    for factor, patience in [(0.5, 3), (0.1, 0), (0.3, 1)]:
        ours = make_schedule("plateau", {"factor": factor, "patience": patience}, 0.1, 30)
        seq = []
        for e, loss in enumerate(losses):
            seq.append(ours.lr(e))
            ours.end_epoch(e, loss)
        theirs = _torch_lrs(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(
            o, mode="min", factor=factor, patience=patience), 30, losses)
        np.testing.assert_allclose(seq, theirs, rtol=1e-12)
