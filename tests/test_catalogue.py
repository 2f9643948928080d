"""One catalogue of ops, keyed by name, used by every stage: the compiler's shape rules, the
runtime's kernels and the ONNX emitters must cover the same ops; and one declaration of every
train-block vocabulary (``nnc/vocab.py``), which the runtime implements entry by entry with no
names, defaults or ranges of its own."""
import importlib.util
import math
from pathlib import Path

import numpy as np

import pytest

from nnc import vocab
from nnc.errors import NncError
from nnc.compiler.ops import OPS
from nnc.compiler.parse import parse_value
from nnc.lang.types import REQUIRED, ArgError, ArgErrors, Bool, Catalogue, Float, Int
from nnc import data
from nnc.runtime import init, losses, metrics, optimizers, schedules
from nnc.runtime.kernels import KERNELS


def test_every_op_has_a_kernel():
    assert sorted(OPS) == sorted(KERNELS)


def test_every_op_has_an_onnx_emitter():
    from nnc.onnx.emitters import EMITTERS
    assert sorted(OPS) == sorted(EMITTERS)


def test_every_op_has_a_torch_lowering():
    from nnc.torch.lowerings import LOWERINGS
    assert sorted(OPS) == sorted(LOWERINGS)


def test_every_op_has_torch_code_for_emit_torch():
    from nnc.torch.emit import EMIT
    assert sorted(OPS) == sorted(EMIT)


def test_builtin_datasets_agree():
    assert tuple(vocab.BUILTIN_DATASETS) == tuple(data.BUILTIN_DATASETS)


@pytest.mark.parametrize("name", list(vocab.BUILTIN_DATASETS))
def test_builtin_dataset_facts_match_the_data(name):
    """`nnc check` validates models against these facts without loading data: they must be true."""
    shape, _dtype, classes = vocab.BUILTIN_DATASETS[name]
    ds = data.load_source("dataset", {"name": name}, Path("."))
    assert tuple(ds.x.shape[1:]) == shape
    if classes is None:
        assert ds.y.dtype.kind == "f"
    else:
        assert ds.y.dtype.kind == "i" and int(ds.y.max()) + 1 == classes


# ----------------------------------------------------------------------------------------------
# the train-block vocabularies: the runtime implements each entry of nnc/vocab.py, reads exactly
# its parameters, and accepts exactly what the compiler accepts


def _run_loss(kind, args):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 3))
    y = {"cross_entropy": np.array([0, 2, 1, 2]), "binary_cross_entropy": (z > 0).astype(float)}.get(
        kind, rng.normal(size=(4, 3)))
    losses.loss_and_grad(kind, args, z, y)


def _run_optimizer(kind, args):
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=(2,))}
    opt = optimizers.make_optimizer(kind, params, args)
    for _ in range(2):
        opt.step({k: rng.normal(size=p.shape) for k, p in params.items()}, 0.01)


def _run_schedule(kind, args):
    s = schedules.make_schedule(kind, args, 0.1, 10)
    for e in range(10):
        s.lr(e)
        s.end_epoch(e, 1.0)  # never improves: plateau decays


def _run_initializer(kind, args):
    init.initialize(kind, args, (4, 3), np.random.default_rng(0), np.float64)


# catalogue -> (the runtime's implementations by name, a call of the runtime's API)
RUNTIME = {
    "loss": (losses.LOSS_FUNCTIONS, _run_loss),
    "optimizer": (optimizers.OPTIMIZER_CLASSES, _run_optimizer),
    "schedule": (schedules.SCHEDULE_CLASSES, _run_schedule),
    "initializer": (init.DRAWS, _run_initializer),
}
ENGINE_CATALOGUES = [c for c in vars(vocab).values() if isinstance(c, Catalogue) and c is not vocab.SOURCES]
ENTRIES = [(c.what, kind) for c in ENGINE_CATALOGUES for kind in c.signatures]
# values that pass a cross-parameter check (uniform: low < high)
OVERRIDES = {("initializer", "uniform"): {"low": -0.5, "high": 0.5}}
# read elsewhere: an optimizer's `lr` is the schedule's base rate (runtime/train.py)
NOT_READ_BY_THE_IMPLEMENTATION = {("optimizer", "lr")}


def _catalogue(what):
    return next(c for c in ENGINE_CATALOGUES if c.what == what)


def _inside(t):
    """A valid value of a parameter's type, away from its bounds and (mostly) its default."""
    if isinstance(t, Bool):
        return True
    if isinstance(t, Int):
        return (t.min if t.min is not None else 0) + 1
    assert isinstance(t, Float), t
    if t.min is not None and t.max is not None:
        return (t.min + t.max) / 2
    return t.min + 0.5 if t.min is not None else 0.5


def _required_args(what, kind):
    sig = _catalogue(what).signatures[kind]
    args = {p.name: _inside(p.type) for p in sig.params if p.default is REQUIRED}
    return {**args, **{k: v for k, v in OVERRIDES.get((what, kind), {}).items() if k in args}}


def _literal(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isinf(v):
        return "1e999"  # a number too large for a float
    return f'"{v}"' if isinstance(v, str) else repr(v)


def _compiler_accepts(what, kind, args) -> bool:
    text = f"{kind}({', '.join(f'{k}={_literal(v)}' for k, v in args.items())})"
    try:
        _catalogue(what).coerce(parse_value(text))
    except (ArgError, ArgErrors):
        return False
    return True


def _runtime_accepts(what, kind, args) -> bool:
    try:
        RUNTIME[what][1](kind, args)
    except NncError as err:
        assert [d.code for d in err.diagnostics][:1] == ["E741"], err
        return False
    return True


def test_every_vocabulary_has_a_runtime():
    assert sorted(c.what for c in ENGINE_CATALOGUES) == sorted(RUNTIME)
    for c in ENGINE_CATALOGUES:
        assert sorted(RUNTIME[c.what][0]) == sorted(c.signatures), c.what
    assert tuple(metrics.METRIC_FUNCTIONS) == vocab.METRICS.choices


def test_the_runtime_declares_no_defaults_or_ranges():
    """Hyper-parameters reach an implementation only through ``Catalogue.validate``."""
    assert importlib.util.find_spec("nnc.runtime.params") is None
    for table, _ in RUNTIME.values():
        for impl in table.values():
            for attr in ("defaults", "_validate"):
                assert not hasattr(impl, attr), (impl, attr)


class _Recording(dict):
    def __init__(self, values):
        super().__init__(values)
        self.read = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)


@pytest.mark.parametrize("what,kind", ENTRIES, ids=[f"{w}-{k}" for w, k in ENTRIES])
def test_the_runtime_reads_exactly_the_signatures_parameters(what, kind, monkeypatch):
    """An implementation gets its parameters normalised (every key present) and reads each one,
    so a parameter declared but not implemented (or read but not declared) fails here."""
    cat = _catalogue(what)
    sig = cat.signatures[kind]
    seen = []
    validate = cat.validate

    def recording(k, args=None, code="E741"):
        seen.append(_Recording(validate(k, args, code)))
        return seen[-1]

    monkeypatch.setattr(cat, "validate", recording)
    args = {**{p.name: _inside(p.type) for p in sig.params}, **OVERRIDES.get((what, kind), {})}
    RUNTIME[what][1](kind, args)
    assert seen and set(seen[-1]) == set(sig.by_name)
    expected = {p.name for p in sig.params if (what, p.name) not in NOT_READ_BY_THE_IMPLEMENTATION}
    assert set().union(*(r.read for r in seen)) == expected


def _boundary_cases():
    for what, kind in ENTRIES:
        sig = _catalogue(what).signatures[kind]
        for p in sig.params:
            t = p.type
            values = ["a string", None if isinstance(t, Bool) else True]
            if isinstance(t, (Int, Float)):
                step = 1 if isinstance(t, Int) else 1e-6
                for bound in (t.min, t.max):
                    if bound is not None:
                        values += [bound - step, bound, bound + step]
                if isinstance(t, Float):
                    values.append(math.inf)
                else:
                    values.append((t.min or 0) + 1.5)
            for v in values:
                if v is not None:
                    yield what, kind, p.name, v
        yield what, kind, "no_such_parameter", 1


@pytest.mark.parametrize("what,kind,param,value", list(_boundary_cases()))
def test_the_runtime_accepts_exactly_what_the_compiler_accepts(what, kind, param, value):
    """Ranges live in the signature only: at and beyond every bound, and for values of the wrong
    type, a direct runtime call (``make_optimizer``, ``make_schedule``, ``initialize``,
    ``loss_and_grad``) agrees with the compiler reading the same call from spec text."""
    args = {**_required_args(what, kind), param: value}
    assert _runtime_accepts(what, kind, args) == _compiler_accepts(what, kind, args)
