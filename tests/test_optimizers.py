"""Optimizers against torch.optim's update equations, written out here element by element."""
from __future__ import annotations

import io
import math
import tracemalloc

import numpy as np
import pytest

from nnc.errors import NncError
from nnc import vocab
from nnc.runtime.optimizers import make_optimizer

OPTIMIZERS = vocab.OPTIMIZERS.defaults()  # the one declaration of the defaults

# ----------------------------------------------------------------------------------------------
# reference updates: one scalar at a time, in float64, with the textbook forms of torch's docs.
# `state` is a dict of per-element lists; `t` the 1-based step.


def ref_sgd(h, p, g, lr, t, state):
    mom, wd, nesterov = h["momentum"], h["weight_decay"], h["nesterov"]
    buf = state.setdefault("buf", [0.0] * len(p))
    out = []
    for i, (pi, gi) in enumerate(zip(p, g)):
        d = gi + wd * pi
        if mom != 0:
            buf[i] = d if t == 1 else mom * buf[i] + d
            d = d + mom * buf[i] if nesterov else buf[i]
        out.append(pi - lr * d)
    return out


def ref_adam(h, p, g, lr, t, state, decoupled=False):
    b1, b2, eps, wd = h["beta1"], h["beta2"], h["eps"], h["weight_decay"]
    m = state.setdefault("m", [0.0] * len(p))
    v = state.setdefault("v", [0.0] * len(p))
    out = []
    for i, (pi, gi) in enumerate(zip(p, g)):
        if decoupled:
            pi = pi * (1 - lr * wd)
            d = gi
        else:
            d = gi + wd * pi
        m[i] = b1 * m[i] + (1 - b1) * d
        v[i] = b2 * v[i] + (1 - b2) * d * d
        m_hat = m[i] / (1 - b1 ** t)
        v_hat = v[i] / (1 - b2 ** t)
        out.append(pi - lr * m_hat / (math.sqrt(v_hat) + eps))
    return out


def ref_adamw(h, p, g, lr, t, state):
    return ref_adam(h, p, g, lr, t, state, decoupled=True)


def ref_rmsprop(h, p, g, lr, t, state):
    rho, eps, mom = h["rho"], h["eps"], h["momentum"]
    sq = state.setdefault("sq", [0.0] * len(p))
    buf = state.setdefault("buf", [0.0] * len(p))
    out = []
    for i, (pi, gi) in enumerate(zip(p, g)):
        sq[i] = rho * sq[i] + (1 - rho) * gi * gi
        avg = math.sqrt(sq[i]) + eps
        if mom > 0:
            buf[i] = mom * buf[i] + gi / avg
            out.append(pi - lr * buf[i])
        else:
            out.append(pi - lr * gi / avg)
    return out


def ref_adagrad(h, p, g, lr, t, state):
    acc = state.setdefault("sum", [0.0] * len(p))
    out = []
    for i, (pi, gi) in enumerate(zip(p, g)):
        acc[i] += gi * gi
        out.append(pi - lr * gi / (math.sqrt(acc[i]) + 1e-10))
    return out


REFERENCE = {"sgd": ref_sgd, "adam": ref_adam, "adamw": ref_adamw, "rmsprop": ref_rmsprop,
             "adagrad": ref_adagrad}

CASES = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("sgd", {"weight_decay": 0.1}),
    ("sgd", {"momentum": 0.5, "weight_decay": 0.05, "nesterov": True}),
    ("adam", {}),
    ("adam", {"weight_decay": 0.1}),
    ("adam", {"beta1": 0.3, "beta2": 0.9, "eps": 1e-3}),  # torch's lerp takes its other branch
    ("adamw", {}),
    ("adamw", {"weight_decay": 0.2, "beta1": 0.8}),
    ("rmsprop", {}),
    ("rmsprop", {"momentum": 0.9}),
    ("rmsprop", {"rho": 0.5, "eps": 1e-4, "momentum": 0.3}),
    ("adagrad", {}),
]
LRS = [0.05, 0.05, 0.02, 0.1, 0.01, 0.03]


def _params(dtype=np.float64):
    rng = np.random.default_rng(3)
    return {"dense_1.weight": rng.normal(size=(3, 4)).astype(dtype),
            "dense_1.bias": rng.normal(size=(3,)).astype(dtype)}


def _grads(params, step):
    """A gradient that depends on the parameters (so errors would compound) and on the step."""
    rng = np.random.default_rng(100 + step)
    return {k: (0.5 * p - 0.3 + rng.normal(size=p.shape)).astype(p.dtype) for k, p in params.items()}


@pytest.mark.parametrize("kind,hyper", CASES, ids=[f"{k}-{h}" for k, h in CASES])
def test_matches_reference_equations(kind, hyper):
    params = _params()
    opt = make_optimizer(kind, params, hyper)
    h = {**OPTIMIZERS[kind], **hyper}
    ref = {k: list(p.ravel()) for k, p in params.items()}
    ref_state = {k: {} for k in params}
    for t, lr in enumerate(LRS, start=1):
        grads = _grads(params, t)
        for k in params:
            ref[k] = REFERENCE[kind](h, ref[k], list(grads[k].ravel()), lr, t, ref_state[k])
        opt.step(grads, lr)
        for k, p in params.items():
            np.testing.assert_allclose(p.ravel(), ref[k], rtol=1e-12, atol=1e-14,
                                       err_msg=f"{kind} {hyper} step {t} {k}")


@pytest.mark.parametrize("kind,hyper", CASES, ids=[f"{k}-{h}" for k, h in CASES])
def test_float32_stays_float32_in_place_and_close(kind, hyper):
    p32 = _params(np.float32)
    p64 = {k: v.astype(np.float64) for k, v in p32.items()}
    ids = {k: id(v) for k, v in p32.items()}
    o32 = make_optimizer(kind, p32, hyper)
    o64 = make_optimizer(kind, p64, hyper)
    for t, lr in enumerate(LRS, start=1):
        g64 = _grads(p64, t)
        o64.step(g64, lr)
        o32.step({k: g.astype(np.float32) for k, g in g64.items()}, lr)
    for k in p32:
        assert p32[k].dtype == np.float32 and id(p32[k]) == ids[k]
        np.testing.assert_allclose(p32[k], p64[k], rtol=2e-5, atol=2e-6)
    for key, value in o32.state_dict().items():
        if ".step." not in key:
            assert value.dtype == np.float32, key


@pytest.mark.parametrize("kind,hyper", CASES, ids=[f"{k}-{h}" for k, h in CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_is_bit_identical(kind, hyper, dtype):
    a = _params(dtype)
    opt_a = make_optimizer(kind, a, hyper)
    for t in range(1, 4):
        opt_a.step(_grads(a, t), LRS[t])
    # save through an npz file, as a checkpoint does
    buf = io.BytesIO()
    np.savez(buf, **opt_a.state_dict(), **{f"w.{k}": v for k, v in a.items()})
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        saved = {k: f[k] for k in f.files}
    b = {k: saved[f"w.{k}"].copy() for k in a}
    opt_b = make_optimizer(kind, b, hyper)
    opt_b.load_state_dict({k: v for k, v in saved.items() if not k.startswith("w.")})
    for t in range(4, 8):
        lr = LRS[t % len(LRS)]
        opt_a.step(_grads(a, t), lr)
        opt_b.step(_grads(b, t), lr)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert b[k].dtype == dtype


def test_state_dict_keys():
    params = _params()
    opt = make_optimizer("adam", params, {})
    opt.step(_grads(params, 1), 0.01)
    state = opt.state_dict()
    assert set(state) == {f"adam.{s}.{k}" for s in ("step", "exp_avg", "exp_avg_sq") for k in params}
    assert state["adam.step.dense_1.weight"].shape == () and int(state["adam.step.dense_1.weight"]) == 1
    assert set(make_optimizer("sgd", _params(), {}).state_dict()) == {
        "sgd.step.dense_1.weight", "sgd.step.dense_1.bias"}
    assert "sgd.momentum_buffer.dense_1.bias" in make_optimizer("sgd", _params(), {"momentum": 0.9}).state_dict()


def test_load_state_dict_rejects_mismatch():
    params = _params()
    adam_state = make_optimizer("adam", params, {}).state_dict()
    with pytest.raises(NncError) as info:
        make_optimizer("sgd", _params(), {"momentum": 0.9}).load_state_dict(adam_state)
    assert info.value.diagnostics[0].code == "E742"
    bad = dict(adam_state)
    bad["adam.exp_avg.dense_1.bias"] = np.zeros(5)
    with pytest.raises(NncError, match="shape"):
        make_optimizer("adam", _params(), {}).load_state_dict(bad)
    missing = dict(adam_state)
    del missing["adam.exp_avg_sq.dense_1.weight"]
    with pytest.raises(NncError, match="adam.exp_avg_sq.dense_1.weight"):
        make_optimizer("adam", _params(), {}).load_state_dict(missing)
    # keys of other components in the same checkpoint are ignored, even a layer named "sgd"
    make_optimizer("adam", _params(), {}).load_state_dict(
        {**adam_state, "schedule.lr": np.array(0.1), "sgd.weight": np.zeros(3),
         "adam.bias": np.zeros(2)})


def test_state_names_cover_every_buffer():
    from nnc.runtime.optimizers import STATE_NAMES
    for kind, hyper in CASES:
        for key in make_optimizer(kind, _params(), hyper).state_dict():
            assert key.split(".")[1] in STATE_NAMES


def test_parameter_without_gradient_is_skipped():
    params = _params()
    before = params["dense_1.bias"].copy()
    opt = make_optimizer("adam", params, {})
    grads = _grads(params, 1)
    del grads["dense_1.bias"]
    opt.step(grads, 0.1)
    np.testing.assert_array_equal(params["dense_1.bias"], before)
    assert opt.steps == {"dense_1.weight": 1, "dense_1.bias": 0}


def test_caller_gradients_not_modified():
    for kind, hyper in CASES:
        params = _params()
        grads = _grads(params, 1)
        copy = {k: g.copy() for k, g in grads.items()}
        opt = make_optimizer(kind, params, hyper)
        opt.step(grads, 0.1)
        opt.step(grads, 0.1)
        for k in grads:
            np.testing.assert_array_equal(grads[k], copy[k])


@pytest.mark.parametrize("kind,hyper", CASES, ids=[f"{k}-{h}" for k, h in CASES])
def test_step_allocates_no_parameter_sized_arrays(kind, hyper):
    params = {"w": np.ones((500, 500))}  # 2 MB
    grads = {"w": np.full((500, 500), 0.1)}
    opt = make_optimizer(kind, params, hyper)
    opt.step(grads, 0.01)
    tracemalloc.start()
    opt.step(grads, 0.01)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 100_000, peak


def test_defaults_are_section_5():
    assert OPTIMIZERS == {
        "sgd": {"lr": 0.01, "momentum": 0, "nesterov": False, "weight_decay": 0},
        "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0},
        "adamw": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
        "rmsprop": {"lr": 0.001, "rho": 0.9, "eps": 1e-8, "momentum": 0},
        "adagrad": {"lr": 0.01},
    }
    assert list(OPTIMIZERS["sgd"]) == ["lr", "momentum", "nesterov", "weight_decay"]


@pytest.mark.parametrize("kind,hyper", [
    ("sgd", {"lr": -1}), ("sgd", {"nesterov": True}), ("sgd", {"momentum": "a lot"}),
    ("sgd", {"nesterov": 1}), ("adam", {"beta1": 1.0}), ("adam", {"beta2": -0.1}),
    ("adamw", {"eps": -1e-8}), ("rmsprop", {"rho": 1.5}), ("adagrad", {"momentum": 0.9}),
    ("lion", {}), ("adam", {"lr": float("nan")}),
])
def test_bad_hyper_parameters_raise_e741(kind, hyper):
    with pytest.raises(NncError) as info:
        make_optimizer(kind, _params(), hyper)
    assert info.value.diagnostics[0].code == "E741"


def test_deterministic():
    results = []
    for _ in range(2):
        params = _params(np.float32)
        opt = make_optimizer("rmsprop", params, {"momentum": 0.9})
        for t in range(1, 5):
            opt.step(_grads(params, t), 0.01)
        results.append(params)
    for k in results[0]:
        np.testing.assert_array_equal(results[0][k], results[1][k])
