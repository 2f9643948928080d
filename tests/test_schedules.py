"""Learning-rate schedules: the per-epoch sequence against the formulas; plateau's state."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nnc.errors import NncError
from nnc import vocab
from nnc.runtime.schedules import make_schedule

SCHEDULES = vocab.SCHEDULES.defaults()  # the one declaration of the defaults (None: required)


def _seq(kind, params, base=0.1, epochs=10):
    s = make_schedule(kind, params, base, epochs)
    return [s.lr(e) for e in range(epochs)]


def test_defaults():
    assert SCHEDULES == {
        "constant": {},
        "step": {"every": None, "gamma": 0.1},
        "exponential": {"gamma": None},
        "cosine": {"min_lr": 0, "warmup": 0},
        "plateau": {"factor": 0.5, "patience": 3},
    }


def test_constant():
    assert _seq("constant", {}) == [0.1] * 10


@pytest.mark.parametrize("every,gamma", [(3, 0.1), (1, 0.5), (4, 0.9)])
def test_step(every, gamma):
    assert _seq("step", {"every": every, "gamma": gamma}) == \
        [0.1 * gamma ** (e // every) for e in range(10)]


def test_step_default_gamma():
    assert _seq("step", {"every": 2}, base=1.0, epochs=5) == [1.0, 1.0, 0.1, 0.1, 0.1 ** 2]


def test_exponential():
    assert _seq("exponential", {"gamma": 0.9}) == [0.1 * 0.9 ** e for e in range(10)]


def test_cosine_without_warmup_is_torch_cosine_annealing():
    base, lo, n = 0.1, 0.001, 10
    expected = [lo + (base - lo) * (1 + math.cos(math.pi * e / n)) / 2 for e in range(n)]
    assert _seq("cosine", {"min_lr": lo}, base, n) == pytest.approx(expected, rel=1e-15)
    seq = _seq("cosine", {}, base, n)
    assert seq[0] == base and all(a > b for a, b in zip(seq, seq[1:])) and seq[-1] > 0


def test_cosine_with_warmup():
    base, w, n = 0.1, 3, 10
    seq = _seq("cosine", {"warmup": w}, base, n)
    assert seq[:3] == pytest.approx([base * 1 / 4, base * 2 / 4, base * 3 / 4])
    t_max = n - w
    assert seq[3:] == pytest.approx(
        [base * (1 + math.cos(math.pi * t / t_max)) / 2 for t in range(t_max)])
    assert seq[3] == base
    # past the end it stays at min_lr
    s = make_schedule("cosine", {"warmup": w, "min_lr": 0.01}, base, n)
    assert s.lr(n) == s.lr(n + 5) == 0.01


def test_cosine_with_warmup_longer_than_training():
    assert _seq("cosine", {"warmup": 5}, 1.0, 3) == pytest.approx([1 / 6, 2 / 6, 3 / 6])


def _run_plateau(losses, **params):
    s = make_schedule("plateau", params, 1.0, len(losses))
    lrs = []
    for e, loss in enumerate(losses):
        lrs.append(s.lr(e))
        s.end_epoch(e, loss)
    return lrs, s


def test_plateau_reduces_after_patience_bad_epochs():
    # torch ReduceLROnPlateau: reduce when num_bad_epochs > patience
    losses = [1.0, 0.9, 0.9, 0.95, 0.91, 0.92, 0.8, 0.85]
    lrs, _ = _run_plateau(losses, patience=3, factor=0.5)
    # bad epochs: 2, 3, 4, 5 -> the 4th (> patience) at epoch 5 -> lr halves from epoch 6
    assert lrs == [1.0] * 6 + [0.5, 0.5]


def test_plateau_patience_zero_and_threshold():
    # improvements smaller than the relative threshold 1e-4 do not count
    losses = [1.0, 0.99995, 0.5, 0.5, 0.5]
    lrs, _ = _run_plateau(losses, patience=0, factor=0.1)
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_plateau_nan_is_a_bad_epoch():
    lrs, _ = _run_plateau([1.0, float("nan"), float("nan")], patience=1)
    assert lrs == [1.0, 1.0, 1.0]
    lrs, s = _run_plateau([1.0, float("nan"), float("nan"), 2.0], patience=1)
    assert s.lr(4) == 0.5


def test_plateau_matches_written_out_rule():
    rng = np.random.default_rng(0)
    losses = list(1.0 / np.arange(1, 41) + rng.uniform(0, 0.05, 40))
    lrs, _ = _run_plateau(losses, patience=2, factor=0.3)
    best, bad, lr, expected = math.inf, 0, 1.0, []
    for loss in losses:
        expected.append(lr)
        if loss < best * (1 - 1e-4):
            best, bad = loss, 0
        else:
            bad += 1
        if bad > 2:
            lr, bad = lr * 0.3, 0
    assert lrs == expected
    assert min(lrs) < 1.0  # the noise made it reduce at least once


def test_plateau_state_round_trip():
    losses = [1.0, 0.9, 0.95, 0.96, 0.97, 0.97, 0.5, 0.6, 0.6, 0.6, 0.6]
    full, _ = _run_plateau(losses, patience=2)
    s = make_schedule("plateau", {"patience": 2}, 1.0, len(losses))
    lrs = []
    for e in range(5):
        lrs.append(s.lr(e))
        s.end_epoch(e, losses[e])
    state = s.state_dict()
    assert all(isinstance(v, np.ndarray) and v.shape == () for v in state.values())
    t = make_schedule("plateau", {"patience": 2}, 1.0, len(losses))
    t.load_state_dict({k: v.copy() for k, v in state.items()})
    for e in range(5, len(losses)):
        lrs.append(t.lr(e))
        t.end_epoch(e, losses[e])
    assert lrs == full


def test_stateless_schedules_state():
    s = make_schedule("step", {"every": 2}, 0.1, 5)
    assert s.state_dict() == {}
    s.load_state_dict({})
    # other components' keys are ignored, even a layer named "schedule"
    s.load_state_dict({"adam.step.w": np.array(3), "schedule.weight": np.zeros(2)})
    from nnc.runtime.schedules import STATE_KEYS
    assert set(make_schedule("plateau", {}, 0.1, 5).state_dict()) <= STATE_KEYS
    plateau_state = make_schedule("plateau", {}, 0.1, 5).state_dict()
    with pytest.raises(NncError) as info:
        s.load_state_dict(plateau_state)
    assert info.value.diagnostics[0].code == "E742"
    with pytest.raises(NncError):
        make_schedule("plateau", {}, 0.1, 5).load_state_dict({})


def test_end_epoch_is_a_no_op_for_closed_forms():
    s = make_schedule("exponential", {"gamma": 0.5}, 1.0, 4)
    s.end_epoch(0, 10.0)
    assert s.lr(1) == 0.5


@pytest.mark.parametrize("kind,params", [
    ("step", {}), ("step", {"every": 0}), ("step", {"every": 1.5}), ("exponential", {}),
    ("exponential", {"gamma": 0}), ("cosine", {"warmup": -1}), ("plateau", {"factor": 1.0}),
    ("plateau", {"patience": -1}), ("plateau", {"cooldown": 2}), ("linear", {}),
    ("step", {"every": True}),
])
def test_bad_parameters_raise_e741(kind, params):
    with pytest.raises(NncError) as info:
        make_schedule(kind, params, 0.1, 10)
    assert info.value.diagnostics[0].code == "E741"
