"""The train-block vocabularies of nnc/vocab.py: one declaration read by the compiler and the
runtime, and ``Catalogue.validate`` for calls made from Python (the runtime's API)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nnc import vocab
from nnc.errors import NncError
from nnc.compiler.lower import check_source
from nnc.compiler.ops import OPS
from nnc.compiler.trainspec import TRAIN_KEYS
from nnc.runtime.init import initialize
from nnc.runtime.losses import loss_and_grad
from nnc.runtime.optimizers import make_optimizer
from nnc.runtime.schedules import make_schedule


def _params():
    return {"w": np.ones((3, 2))}


def _e741(call) -> list:
    with pytest.raises(NncError) as info:
        call()
    assert {d.code for d in info.value.diagnostics} == {"E741"}
    assert all(d.span is None for d in info.value.diagnostics)
    return info.value.diagnostics


def _compile_errors(train: str) -> list[str]:
    spec = f"model m {{\n    input x: [4]\n    dense(3)\n}}\ntrain {{\n    loss = mse\n    {train}\n}}\n"
    with pytest.raises(NncError) as info:
        check_source(spec, "m.nnspec")
    return [d.code for d in info.value.diagnostics]


# ----------------------------------------------------------------------------------------------
# the four verified mismatches: refused by the compiler, once accepted by the runtime's API


def test_sgd_momentum_above_one_is_refused_by_both():
    assert _compile_errors("optimizer = sgd(momentum=1.5)") == ["E402"]
    [d] = _e741(lambda: make_optimizer("sgd", _params(), {"momentum": 1.5}))
    assert d.message == "optimizer `sgd` `momentum`: 1.5 is out of range: expected a number in [0, 1]"


def test_plateau_factor_zero_is_refused_by_both():
    assert _compile_errors("schedule = plateau(factor=0)") == ["E402"]
    [d] = _e741(lambda: make_schedule("plateau", {"factor": 0}, 0.1, 10))
    assert d.message == "schedule `plateau` `factor`: 0 is out of range: expected a number in (0, 1)"


def test_uniform_needs_low_below_high_in_both():
    with pytest.raises(NncError) as info:
        check_source("model m {\n    input x: [4]\n    dense(3, init=uniform(0.1, 0.1))\n}\n", "m.nnspec")
    assert [d.code for d in info.value.diagnostics] == ["E402"]
    [d] = _e741(lambda: initialize("uniform", {"low": 0.1, "high": 0.1}, (3, 2), np.random.default_rng(0),
                                   np.float32))
    assert d.message == "`uniform` needs low < high, got 0.1 and 0.1"


@pytest.mark.parametrize("kind,default", [("uniform", {"low": -0.05, "high": 0.05}),
                                          ("normal", {"mean": 0.0, "std": 0.05})])
def test_bare_uniform_and_normal_take_the_declared_defaults_in_both(kind, default):
    """Bare `uniform` is uniform(-0.05, 0.05), embedding's default init (docs/language.md, 7);
    the runtime once required both bounds (and normal's mean and std)."""
    program = check_source(f"model m {{\n    input x: [4]\n    dense(3, init={kind})\n}}\n", "m.nnspec")
    weight = next(w for w in program["model"]["nodes"][0]["weights"] if w["name"] == "weight")
    assert weight["init"] == {"kind": kind, **default}
    bare = initialize(kind, {}, (50, 40), np.random.default_rng(3), np.float64)
    spelled = initialize(kind, default, (50, 40), np.random.default_rng(3), np.float64)
    np.testing.assert_array_equal(bare, spelled)
    if kind == "uniform":
        assert bare.min() >= -0.05 and bare.max() < 0.05


def test_embedding_default_is_bare_uniform():
    param = OPS["embedding"].sig.by_name["init"]
    assert param.default == vocab.INITIALIZERS.value("uniform")


# found while unifying: further values the runtime's own ranges accepted and the language refuses
@pytest.mark.parametrize("kind,hyper", [
    ("sgd", {"lr": 0}), ("adam", {"eps": 0}), ("rmsprop", {"rho": 1.0}), ("rmsprop", {"momentum": 1.5}),
    ("adamw", {"lr": 0.0}),
])
def test_more_former_runtime_only_values_are_refused(kind, hyper):
    _e741(lambda: make_optimizer(kind, _params(), hyper))


# ----------------------------------------------------------------------------------------------
# Catalogue.validate


def test_validate_fills_every_default_and_normalises_numbers():
    h = vocab.OPTIMIZERS.validate("sgd", {"lr": 1})
    assert h == {"lr": 1.0, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
    assert type(h["lr"]) is float
    assert vocab.SCHEDULES.validate("step", {"every": np.int64(3)}) == {"every": 3, "gamma": 0.1}
    assert vocab.OPTIMIZERS.validate("sgd", {"momentum": np.float32(0.5), "nesterov": np.bool_(True)}) == \
        {"lr": 0.01, "momentum": 0.5, "nesterov": True, "weight_decay": 0.0}
    assert vocab.LOSSES.validate("mse") == {}


def test_validate_reports_every_problem_with_component_key_and_range():
    ds = _e741(lambda: vocab.OPTIMIZERS.validate("adam", {"beta1": 1.0, "eps": -1, "lr": "fast"}))
    assert [d.message for d in ds] == [
        "optimizer `adam` `beta1`: 1.0 is out of range: expected a number in [0, 1)",
        "optimizer `adam` `eps`: -1 is out of range: expected a number > 0",
        'optimizer `adam` `lr`: expected a number > 0, got a string `"fast"`',
    ]


@pytest.mark.parametrize("catalogue,kind,args,message,hint", [
    (vocab.OPTIMIZERS, "adma", {}, "unknown optimizer `adma`", "did you mean `adam`?"),
    (vocab.LOSSES, "hinge", {}, "unknown loss `hinge`", "choose one of mse, mae, huber, cross_entropy, "
     "binary_cross_entropy"),
    (vocab.LOSSES, "mse", {"delta": 1.0}, "loss `mse` has no parameter `delta`", "usage: mse"),
    (vocab.SCHEDULES, "step", {"every": 2, "gama": 0.5}, "schedule `step` has no parameter `gama`",
     "did you mean `gamma`?"),
    (vocab.SCHEDULES, "exponential", {}, "schedule `exponential` needs `gamma`", "usage: exponential(gamma)"),
    (vocab.OPTIMIZERS, "sgd", {"nesterov": True}, "optimizer `sgd`: nesterov momentum needs momentum > 0",
     "e.g. sgd(lr=0.1, momentum=0.9, nesterov=true)"),
    (vocab.INITIALIZERS, "constant", {"v": None},
     "initializer `constant` `v`: expected a number, got a value `None`", None),
    (vocab.SCHEDULES, "step", {"every": 2.0}, "schedule `step` `every`: expected an integer, got `2.0`", None),
    (vocab.OPTIMIZERS, "adam", {"lr": float("nan")}, "optimizer `adam` `lr`: `nan` is not a finite number", None),
])
def test_validate_messages(catalogue, kind, args, message, hint):
    [d] = _e741(lambda: catalogue.validate(kind, args))
    if message is not None:
        assert d.message == message
    if hint is not None:
        assert d.hint == hint


def test_losses_validate_through_the_vocabulary():
    [d] = _e741(lambda: loss_and_grad("huber", {"delta": -1.0}, np.zeros((1, 2)), np.zeros((1, 2))))
    assert d.message == "loss `huber` `delta`: -1.0 is out of range: expected a number > 0"


# ----------------------------------------------------------------------------------------------
# declared once


def test_the_compiler_reads_the_vocabulary():
    assert TRAIN_KEYS["loss"].type is vocab.LOSSES
    assert TRAIN_KEYS["optimizer"].type is vocab.OPTIMIZERS
    assert TRAIN_KEYS["schedule"].type is vocab.SCHEDULES
    assert TRAIN_KEYS["data"].type is vocab.SOURCES
    assert TRAIN_KEYS["metrics"].type.item is vocab.METRICS
    assert TRAIN_KEYS["optimizer"].default == vocab.OPTIMIZERS.value("adam")
    assert OPS["dense"].sig.by_name["init"].type is vocab.INITIALIZERS


def test_the_vocabulary_imports_no_numpy():
    code = "import sys, nnc.vocab; print(sorted(m for m in ('numpy', 'onnx', 'pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
