"""Data-parallel training: ``nnc train --engine torch --nproc 2`` (two processes over gloo,
launched through ``torch.distributed.run``) equals the NumPy engine's one-process run.

The model has dropout (masks from nnc's generator, each process taking its rows of the whole
batch's mask), batchnorm over images (statistics of the whole batch, all-reduced inside the layer)
and clipping; ``batch_size = 7`` splits each batch 4 + 3, and the last training batch of one row
gives the second process an empty share (the validation set, 9 rows, ends in 1 + 1). The result is
within twice the contract's float64 tolerance, as 6.2 promises. One launch: about 10 s.
"""
from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run

ROOT = Path(__file__).resolve().parents[1]

SPEC = """
model dp {
    input image: [2, 5, 5]

    conv2d(3, 3, padding=same, bias=false) -> batchnorm -> relu
    dropout(0.3) -> flatten
    dense(6) -> batchnorm -> tanh
    dense(3) -> softmax
}

train {
    data       = npz("train.npz")
    validation = npz("val.npz")
    loss       = cross_entropy
    optimizer  = sgd(lr=0.1, momentum=0.9)
    schedule   = step(every=1, gamma=0.5)
    epochs     = 2
    batch_size = 7
    clip_norm  = 0.3
    seed       = 5
    dtype      = float64
}
"""


def _data(tmp_path):
    rng = np.random.default_rng(1)
    for name, n in (("train", 43), ("val", 9)):      # 43 = 6 * 7 + 1: the last batch has one row
        x = rng.standard_normal((n, 2, 5, 5))
        np.savez(tmp_path / f"{name}.npz", x=x, y=rng.integers(0, 3, n))
    (tmp_path / "dp.nnspec").write_text(SPEC)
    return tmp_path / "dp.nnspec"


def _ours(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (this test's directory)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd:
                found.append(int(pid))
    return found


def test_two_processes_equal_one(tmp_path, capsys):
    spec = _data(tmp_path)
    code, _, err = run(["train", spec, "--out", tmp_path / "one", "--quiet"], capsys)
    assert code == 0, err
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "nnc.cli", "train", str(spec), "--engine", "torch", "--nproc", "2",
                             "--out", str(tmp_path / "two")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the 2-process run did not finish in 4 minutes")
    assert proc.returncode == 0, err
    assert "2 processes" in err and err.count("epoch 1/2") == 1      # only rank 0 prints
    assert "Traceback" not in err
    assert not _ours(str(tmp_path)), "processes of the run are still alive"
    with np.load(tmp_path / "one" / "weights.npz") as a, np.load(tmp_path / "two" / "weights.npz") as b:
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_allclose(b[k], a[k], rtol=2e-9, atol=2e-12, err_msg=k)
    h1, h2 = (list(csv.DictReader(io.StringIO((tmp_path / d / "history.csv").read_text()))) for d in ("one", "two"))
    assert len(h1) == len(h2) == 2
    for r1, r2 in zip(h1, h2):
        for col in r1:
            if col != "seconds":
                assert float(r2[col]) == pytest.approx(float(r1[col]), rel=2e-9, abs=2e-12), col
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))
