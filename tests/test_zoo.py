"""The zoo (specs/zoo/): each spec checks, has exactly the parameters and FLOPs of the equivalent
PyTorch model (written by hand here: no torchvision), and the small ones, exported with that torch
model's weights, give onnxruntime outputs equal to torch's. Two of them train on generated data to
a stated quality.

The torch models (tests/zoo_models.py) register their layers in the spec's order, so their
``state_dict`` lines up with nnc's weights one to one; the mapping checks every shape. FLOPs are
counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add of matrix products
and convolutions, as nnc counts).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nnc.compiler.lower import compile_source  # noqa: E402
from zoo_models import ZOO_MODELS, example, lively, torch_flops, torch_weights  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "specs" / "zoo"


def test_every_zoo_spec_has_a_reference_here():
    assert sorted(p.stem for p in ZOO.glob("*.nnspec")) == sorted(ZOO_MODELS)


def _program(name: str):
    path = ZOO / f"{name}.nnspec"
    return compile_source(path.read_text(encoding="utf-8"), str(path))


@pytest.mark.parametrize("name", sorted(ZOO_MODELS))
def test_parameters_and_flops_equal_torchs(name):
    program = _program(name)
    assert all(a.actual is not None for a in program.model.assertions)
    build, _ = ZOO_MODELS[name]
    model, shape = build()
    torch_params = sum(p.numel() for p in model.parameters())
    assert program.model.params == torch_params
    assert program.model.flops == torch_flops(model, shape)
    want = [shape[1]] if shape[0] == "int64" else list(shape)
    assert list(program.model.inputs[0].shape) == want


@pytest.mark.parametrize("name", sorted(n for n, (_, export) in ZOO_MODELS.items() if export))
def test_export_with_torchs_weights_equals_torch(name, tmp_path):
    import onnxruntime as ort

    from nnc.api import export_onnx
    program = _program(name)
    build, _ = ZOO_MODELS[name]
    torch.manual_seed(0)
    model, shape = build()
    lively(model)
    weights = torch_weights(model, program)
    out = tmp_path / f"{name}.onnx"
    export_onnx(program, out, weights=weights)
    x = example(shape, 3, np.random.default_rng(0))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# two small ones train, with their own settings, on generated data to a stated quality

def _blobs(n: int, seed: int) -> np.ndarray:
    """[n, 1, 28, 28] images in [0, 1]: one or two bright squares or discs on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    x = np.zeros((n, 1, 28, 28), np.float32)
    for i in range(n):
        for _ in range(rng.integers(1, 3)):
            r, c, s = rng.integers(4, 24), rng.integers(4, 24), rng.integers(3, 7)
            if rng.random() < 0.5:
                mask = (abs(yy - r) <= s) & (abs(xx - c) <= s)
            else:
                mask = (yy - r) ** 2 + (xx - c) ** 2 <= s * s
            x[i, 0][mask] = rng.uniform(0.6, 1.0)
    return x


def _signals(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[n, 1, 128] noisy signals of 4 kinds (sine, square, sawtooth, bursts) at random phase."""
    rng = np.random.default_rng(seed)
    t = np.arange(128) / 128
    y = np.arange(n) % 4
    rng.shuffle(y)
    x = np.empty((n, 1, 128), np.float32)
    for i, k in enumerate(y):
        f, phase = rng.uniform(3, 6), rng.uniform(0, 1)
        u = (f * t + phase) % 1.0
        s = [np.sin(2 * np.pi * u), np.sign(u - 0.5), 2 * u - 1,
             np.where(np.sin(2 * np.pi * u) > 0.8, 1.0, 0.0) * rng.standard_normal(128)][k]
        x[i, 0] = s + 0.3 * rng.standard_normal(128)
    return x, y.astype(np.int64)


def _train(name: str, tmp_path, x, y):
    import csv
    import io
    from nnc.cli import main
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=y)
    out = tmp_path / "run"
    rc = main(["train", str(ZOO / f"{name}.nnspec"), "--data", f'npz("{data}")', "--set", "validation=0.25",
               "--out", str(out), "--quiet"])
    assert rc == 0
    return list(csv.DictReader(io.StringIO((out / "history.csv").read_text())))


def test_the_autoencoder_learns_to_reconstruct(tmp_path):
    """Reconstruction MSE on held-out images below a fifth of their variance (what predicting the
    mean image everywhere would cost)."""
    x = _blobs(320, seed=3)
    rows = _train("conv_autoencoder", tmp_path, x, x)
    val_mse = float(rows[-1]["val_loss"])
    assert val_mse < 0.2 * float(x.var()), (val_mse, float(x.var()))


def test_the_1d_cnn_classifies_signals(tmp_path):
    x, y = _signals(320, seed=4)
    rows = _train("cnn1d_timeseries", tmp_path, x, y)
    assert float(rows[-1]["val_accuracy"]) >= 0.9, rows[-1]
