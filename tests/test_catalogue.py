"""One catalogue of ops, keyed by name, used by every stage: the compiler's shape rules, the
runtime's kernels and the ONNX emitters must cover the same ops, and the compiler's train-block
catalogues must agree with what the runtime implements."""
import importlib.util

import pytest

from nnc.compiler import trainspec
from nnc.compiler.ops import OPS
from nnc.compiler.types import INITIALIZERS, REQUIRED
from nnc.runtime import data, init, losses, optimizers, schedules
from nnc.runtime.kernels import KERNELS


def test_every_op_has_a_kernel():
    assert sorted(OPS) == sorted(KERNELS)


@pytest.mark.skipif(importlib.util.find_spec("nnc.compiler.onnx_export") is None,
                    reason="the ONNX exporter is not installed in this tree")
def test_every_op_has_an_onnx_emitter():
    from nnc.compiler.onnx_export import EMITTERS
    assert sorted(OPS) == sorted(EMITTERS)


def test_builtin_datasets_agree():
    assert tuple(trainspec.BUILTIN_DATASETS) == tuple(data.BUILTIN_DATASETS)


@pytest.mark.parametrize("name", list(trainspec.BUILTIN_DATASETS))
def test_builtin_dataset_facts_match_the_data(name):
    """`nnc check` validates models against these facts without loading data: they must be true."""
    shape, _dtype, classes = trainspec.BUILTIN_DATASETS[name]
    ds = data.load_source("dataset", {"name": name}, data.Path("."))
    assert tuple(ds.x.shape[1:]) == shape
    if classes is None:
        assert ds.y.dtype.kind == "f"
    else:
        assert ds.y.dtype.kind == "i" and int(ds.y.max()) + 1 == classes


def test_initializers_agree():
    assert sorted(INITIALIZERS.signatures) == sorted(init.INITIALIZERS)
    for name, sig in INITIALIZERS.signatures.items():
        assert [p.name for p in sig.params] == list(init.INITIALIZERS[name]), name


def _defaults(sig):
    return {p.name: p.default for p in sig.params if p.default is not REQUIRED}


def test_optimizer_defaults_agree():
    assert sorted(trainspec.OPTIMIZERS.signatures) == sorted(optimizers.OPTIMIZERS)
    for name, sig in trainspec.OPTIMIZERS.signatures.items():
        assert _defaults(sig) == optimizers.OPTIMIZERS[name], name


def test_schedule_parameters_agree():
    assert sorted(trainspec.SCHEDULES.signatures) == sorted(schedules.SCHEDULES)
    for name, sig in trainspec.SCHEDULES.signatures.items():
        runtime = schedules.SCHEDULES[name]
        assert [p.name for p in sig.params] == list(runtime), name
        assert _defaults(sig) == {k: v for k, v in runtime.items() if v is not None}, name


def test_losses_agree():
    assert sorted(trainspec.LOSSES.signatures) == sorted(losses.LOSS_PARAMS)
    for name, sig in trainspec.LOSSES.signatures.items():
        assert _defaults(sig) == losses.LOSS_PARAMS[name], name
