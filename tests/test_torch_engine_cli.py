"""``nnc train --engine torch`` from the command line: the same run directory as the NumPy engine,
checkpoints that either engine resumes, and clear errors (no torch, no GPU, wrong flags)."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import run

ROOT = Path(__file__).resolve().parents[1]

SPEC = """
model small_cnn {
    input image: [1, 6, 6]

    conv2d(4, 3, padding=same, bias=false) -> batchnorm -> relu   # (a bias there gets only rounding noise)
    maxpool2d(2) -> flatten -> dropout(0.25)
    dense(3) -> softmax
}

train {
    data       = npz("data.npz")
    validation = 0.2
    loss       = cross_entropy
    optimizer  = adam(lr=0.01)
    schedule   = cosine(warmup=1)
    epochs     = 4
    batch_size = 16
    seed       = 3
    dtype      = float64
}
"""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def spec(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((70, 1, 6, 6))
    y = (x[:, 0, :3].mean(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 0, 3:].mean(axis=(1, 2)) > 0.3)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    path = tmp_path / "small_cnn.nnspec"
    path.write_text(SPEC)
    return path


def _train(capsys, spec, out, *extra):
    code, stdout, stderr = run(["train", spec, "--out", out, "--quiet", *extra], capsys)
    assert code == 0, stdout + stderr
    return stdout


def _weights(out):
    with np.load(out / "weights.npz") as z:
        return {k: z[k] for k in z.files}


def _history(out):
    return list(csv.DictReader(io.StringIO((out / "history.csv").read_text())))


def _same_run(a, b, rtol=1e-9, atol=1e-12, exact=False):
    wa, wb = _weights(a), _weights(b)
    assert list(wa) == list(wb)
    for k in wa:
        if exact:
            assert np.array_equal(wa[k], wb[k]), k
        else:
            np.testing.assert_allclose(wb[k], wa[k], rtol=rtol, atol=atol, err_msg=k)
    ha, hb = _history(a), _history(b)
    assert [list(r) for r in ha] == [list(r) for r in hb]
    for ra, rb in zip(ha, hb):
        for col in ra:
            if col != "seconds":
                assert float(rb[col]) == pytest.approx(float(ra[col]), rel=rtol, abs=atol), col


def test_torch_run_directory_equals_the_numpy_one(tmp_path, capsys, spec):
    summary_n = _train(capsys, spec, tmp_path / "n")
    code, summary_t, err = run(["train", spec, "--out", tmp_path / "t", "--engine", "torch", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "(torch engine on cpu)" in err
    assert sorted(os.listdir(tmp_path / "n")) == sorted(os.listdir(tmp_path / "t"))
    assert summary_t.rsplit(";", 1)[0] == summary_n.rsplit(";", 1)[0]      # the same numbers, to 4 digits
    _same_run(tmp_path / "n", tmp_path / "t")
    with np.load(tmp_path / "t" / "checkpoint.npz") as zt, np.load(tmp_path / "n" / "checkpoint.npz") as zn:
        assert sorted(zt.files) == sorted(zn.files)
        for k in zn.files:
            if k != "meta":
                np.testing.assert_allclose(zt[k], zn[k], rtol=1e-7, atol=1e-12, err_msg=k)
    # model.onnx comes from nnc's exporter, with the torch run's weights
    import onnxruntime as ort
    x = np.random.default_rng(1).standard_normal((5, 1, 6, 6)).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "t" / "model.onnx"))
    got = sess.run(None, {"image": x})[0]
    from nnc.api import load
    model = load(str(spec))
    model.load_weights(tmp_path / "t" / "weights.npz")
    np.testing.assert_allclose(got, model.predict(x.astype(np.float64)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("first,then", [("numpy", "torch"), ("torch", "numpy")])
def test_resume_across_engines_equals_an_uninterrupted_numpy_run(tmp_path, capsys, spec, first, then):
    _train(capsys, spec, tmp_path / "whole")
    _train(capsys, spec, tmp_path / "resumed", "--set", "epochs=2", "--engine", first)
    code, out, err = run(["train", spec, "--resume", tmp_path / "resumed", "--engine", then, "--quiet"], capsys)
    assert code == 0, err
    assert len(_history(tmp_path / "resumed")) == 4
    _same_run(tmp_path / "whole", tmp_path / "resumed")


def test_torch_resume_is_bit_for_bit(tmp_path, capsys, spec):
    _train(capsys, spec, tmp_path / "whole", "--engine", "torch")
    _train(capsys, spec, tmp_path / "resumed", "--set", "epochs=2", "--engine", "torch")
    code, _, err = run(["train", spec, "--resume", tmp_path / "resumed", "--engine", "torch", "--quiet"], capsys)
    assert code == 0, err
    _same_run(tmp_path / "whole", tmp_path / "resumed", exact=True)


def test_optimizer_state_round_trips_for_every_optimizer(tmp_path, capsys, spec):
    """Each optimizer's torch state converts to nnc's checkpoint format and back: a torch run
    resumed by the NumPy engine ends where a NumPy run ends."""
    for opt in ("sgd(lr=0.05, momentum=0.9, nesterov=true, weight_decay=0.01)", "adamw(lr=0.01)",
                "rmsprop(lr=0.01, momentum=0.5)", "adagrad(lr=0.05)", "sgd(lr=0.1)"):
        name = opt.split("(")[0] + str(len(opt))
        settings = ["--set", f"optimizer={opt}", "--set", "clip_norm=0.5"]
        _train(capsys, spec, tmp_path / f"{name}-n", *settings)
        _train(capsys, spec, tmp_path / f"{name}-t", *settings, "--set", "epochs=2", "--engine", "torch")
        code, _, err = run(["train", spec, "--resume", tmp_path / f"{name}-t", "--quiet", *settings], capsys)
        assert code == 0, err
        _same_run(tmp_path / f"{name}-n", tmp_path / f"{name}-t")


# ----------------------------------------------------------------------------------------------
# errors

def test_device_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys, spec):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")     # the CPU-only CI machines run this
    code, out, err = run(["train", spec, "--out", tmp_path / "g", "--engine", "torch", "--device", "cuda"], capsys)
    assert code == 1
    assert "error[E781]" in err and "CUDA is not available" in err and "--device cpu" in err
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize("argv,message", [
    (["--device", "cpu"], "--device is an option of the torch engine"),
    (["--nproc", "2"], "--nproc is an option of the torch engine"),
    (["--engine", "torch", "--device", "gpu"], "'gpu' is not a device"),
    (["--engine", "torch", "--nproc", "0"], "not a positive number of processes"),
    (["--engine", "jax"], "invalid choice"),
])
def test_wrong_engine_flags_are_exit_2(tmp_path, capsys, spec, argv, message):
    code, out, err = run(["train", spec, "--out", tmp_path / "x", *argv], capsys)
    assert code == 2
    assert message in err


def test_the_numpy_engine_refuses_to_be_one_of_many_processes(tmp_path, capsys, spec, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, out, err = run(["train", spec, "--out", tmp_path / "x"], capsys)
    assert code == 1
    assert "error[E782]" in err and "--engine torch" in err


def test_without_torch_the_error_says_how_to_install_it(tmp_path, spec):
    script = ("import sys; sys.modules['torch'] = None\n"
              "from nnc.cli import main\n"
              f"sys.exit(main(['train', {str(spec)!r}, '--out', {str(tmp_path / 'x')!r}, '--engine', 'torch']))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "error[E780]" in proc.stderr and "pip install 'nnc[torch]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_nproc_checks_the_run_directory_before_starting_processes(tmp_path, capsys, spec):
    _train(capsys, spec, tmp_path / "run", "--set", "epochs=1")
    code, out, err = run(["train", spec, "--out", tmp_path / "run", "--engine", "torch", "--nproc", "2"], capsys)
    assert code == 1
    assert err.count("error[E767]") == 1 and "--resume" in err
