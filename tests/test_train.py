"""Training runs end to end: determinism, bit-identical resume, atomic checkpoints, the NaN guard,
early stopping, and one optimizer step through the Trainer checked by hand.

Runs go through the real command (``nnc.cli.main`` in this process, or ``python -m nnc.cli`` in a
subprocess when the test kills it) into ``tmp_path``. "Bit-identical" compares the raw bytes of every
array in weights.npz and checkpoint.npz (weights, optimizer state, schedule state), the checkpoint's
metadata (epoch, random-generator state, early-stopping counters, history) and history.csv, leaving out
only the ``seconds`` column, which is wall-clock time.
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nnc.util
from nnc.cli import main

ROOT = Path(__file__).resolve().parents[1]

TINY = """
model tiny {
    input features: [4]
    dense(16) -> relu
    dropout(0.3)
    dense(3) -> softmax
}

train {
    data       = dataset("iris")
    validation = 0.2
    loss       = cross_entropy
    optimizer  = adam(lr=0.01)
    epochs     = 4
    batch_size = 16
    shuffle    = true
    seed       = 3
}
"""


def write_spec(tmp_path: Path, text: str = TINY, name: str = "tiny.nnspec") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run(capsys, *argv) -> tuple[int, str]:
    """Run ``nnc ARGV`` in this process; returns (exit code, stdout + stderr)."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def meta_of(ckpt: dict[str, np.ndarray]) -> dict:
    return json.loads(str(ckpt["meta"]))


def history_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    return rows[0], rows[1:]


def without_seconds(header: list[str], rows: list[list[str]]) -> list[list[str]]:
    i = header.index("seconds")
    return [r[:i] + r[i + 1:] for r in rows]


def assert_arrays_identical(a: dict, b: dict, what: str) -> None:
    assert sorted(a) == sorted(b), f"{what}: keys differ: {sorted(set(a) ^ set(b))}"
    for k in a:
        if k == "meta":
            continue
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, f"{what}: `{k}` dtype/shape differ"
        assert a[k].tobytes() == b[k].tobytes(), f"{what}: `{k}` differs (max |diff| " \
            f"{np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64))) if a[k].size else 0})"


def comparable_meta(meta: dict) -> dict:
    meta = dict(meta)
    meta["history"] = [{k: v for k, v in h.items() if k != "seconds"} for h in meta["history"]]
    return meta


def assert_same_run(a: Path, b: Path) -> None:
    """Two run directories hold bit-identical results (the `seconds` column aside)."""
    assert_arrays_identical(npz(a / "weights.npz"), npz(b / "weights.npz"), "weights.npz")
    ca, cb = npz(a / "checkpoint.npz"), npz(b / "checkpoint.npz")
    assert_arrays_identical(ca, cb, "checkpoint.npz")
    ma, mb = comparable_meta(meta_of(ca)), comparable_meta(meta_of(cb))
    assert ma["rng"] == mb["rng"], "checkpoint random-generator state differs"
    assert ma == mb, "checkpoint metadata differs"
    ha, ra = history_rows(a / "history.csv")
    hb, rb = history_rows(b / "history.csv")
    assert ha == hb
    assert without_seconds(ha, ra) == without_seconds(hb, rb), "history.csv differs"


def temp_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".nnc"))


# ----------------------------------------------------------------------------------------------
# determinism

def test_same_seed_gives_bit_identical_runs(tmp_path, capsys):
    spec = write_spec(tmp_path)
    for d in ("a", "b"):
        rc, out = run(capsys, "train", spec, "--out", tmp_path / d, "--quiet")
        assert rc == 0, out
    assert_same_run(tmp_path / "a", tmp_path / "b")
    assert len(history_rows(tmp_path / "a" / "history.csv")[1]) == 4


def test_different_seed_gives_different_weights(tmp_path, capsys):
    spec = write_spec(tmp_path)
    assert run(capsys, "train", spec, "--out", tmp_path / "a", "--quiet")[0] == 0
    assert run(capsys, "train", spec, "--out", tmp_path / "b", "--set", "seed=4", "--quiet")[0] == 0
    wa, wb = npz(tmp_path / "a" / "weights.npz"), npz(tmp_path / "b" / "weights.npz")
    assert sorted(wa) == sorted(wb)
    for k in wa:
        assert not np.array_equal(wa[k], wb[k]), f"`{k}` is the same under seeds 3 and 4"
    la = [r[1] for r in history_rows(tmp_path / "a" / "history.csv")[1]]
    lb = [r[1] for r in history_rows(tmp_path / "b" / "history.csv")[1]]
    assert la != lb


def test_seed_draws_init_from_default_rng_seed(tmp_path):
    """Initial weights are the spec's initialisers drawn from default_rng(seed) (docs/training.md)."""
    import nnc
    from nnc.runtime.graph import Graph
    m = nnc.load(write_spec(tmp_path))
    fresh = Graph(m.program.model).init_weights(3)
    assert_arrays_identical(m.weights, fresh, "initial weights")


# ----------------------------------------------------------------------------------------------
# resume

RESUME_CASES = [
    pytest.param("adam(lr=0.01)", "constant", "0.2", id="adam+dropout+shuffle+validation"),
    pytest.param("sgd(lr=0.05, momentum=0.9, nesterov=true)", "plateau(factor=0.5, patience=1)", "0.2",
                 id="sgd-momentum+plateau+validation"),
    pytest.param("sgd(lr=0.05, momentum=0.9)", "exponential(gamma=0.8)", "0", id="sgd-momentum-no-validation"),
    pytest.param("rmsprop(lr=0.005, momentum=0.5)", "step(every=1, gamma=0.5)", "0.2", id="rmsprop+step"),
]


@pytest.mark.parametrize("optimizer,schedule,validation", RESUME_CASES)
def test_two_epochs_plus_resume_equals_four_straight(tmp_path, capsys, optimizer, schedule, validation):
    spec = write_spec(tmp_path)
    common = ["--set", f"optimizer={optimizer}", "--set", f"schedule={schedule}",
              "--set", f"validation={validation}", "--quiet"]
    rc, out = run(capsys, "train", spec, "--out", tmp_path / "straight", "--set", "epochs=4", *common)
    assert rc == 0, out
    rc, out = run(capsys, "train", spec, "--out", tmp_path / "resumed", "--set", "epochs=2", *common)
    assert rc == 0, out
    assert meta_of(npz(tmp_path / "resumed" / "checkpoint.npz"))["epoch"] == 2
    rc, out = run(capsys, "train", spec, "--resume", tmp_path / "resumed", "--set", "epochs=4", *common)
    assert rc == 0, out
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    header, rows = history_rows(tmp_path / "resumed" / "history.csv")
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    if validation != "0":
        assert "val_loss" in header


def test_resume_of_a_finished_run_exits_0_and_changes_nothing(tmp_path, capsys):
    spec = write_spec(tmp_path)
    run_dir = tmp_path / "run"
    assert run(capsys, "train", spec, "--out", run_dir, "--quiet")[0] == 0
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    rc, out = run(capsys, "train", spec, "--resume", run_dir)
    assert rc == 0, out
    assert "Traceback" not in out
    for name in ("weights.npz", "checkpoint.npz", "history.csv"):
        assert (run_dir / name).read_bytes() == before[name], f"{name} was rewritten"


def test_resume_of_a_finished_run_says_nothing_to_do(tmp_path, capsys):
    spec = write_spec(tmp_path)
    run_dir = tmp_path / "run"
    assert run(capsys, "train", spec, "--out", run_dir, "--quiet")[0] == 0
    rc, out = run(capsys, "train", spec, "--resume", run_dir)
    assert rc == 0
    assert "nothing to do" in out, out


def test_resume_with_other_metrics_is_not_an_internal_error(tmp_path, capsys):
    spec = write_spec(tmp_path)
    run_dir = tmp_path / "run"
    assert run(capsys, "train", spec, "--out", run_dir, "--set", "epochs=2", "--quiet")[0] == 0
    rc, out = run(capsys, "train", spec, "--resume", run_dir, "--set", "metrics=[accuracy, mse]", "--quiet")
    assert "internal error" not in out, out
    assert rc == 1 and "E762" in out or rc == 0 and "mse" in history_rows(run_dir / "history.csv")[0], out


def test_resume_with_a_changed_architecture_is_refused(tmp_path, capsys):
    text = TINY.replace("dense(16)", "dense(hidden)").replace("model tiny", "let hidden = 16\nmodel tiny")
    spec = write_spec(tmp_path, text)
    run_dir = tmp_path / "run"
    assert run(capsys, "train", spec, "--out", run_dir, "--set", "epochs=2", "--quiet")[0] == 0
    before = (run_dir / "checkpoint.npz").read_bytes()
    rc, out = run(capsys, "train", spec, "--resume", run_dir, "--set", "hidden=8")
    assert rc == 1 and "E762" in out and "Traceback" not in out, out
    assert "checkpoint.npz" in out
    assert (run_dir / "checkpoint.npz").read_bytes() == before


def test_resume_with_another_optimizer_is_refused(tmp_path, capsys):
    spec = write_spec(tmp_path)
    run_dir = tmp_path / "run"
    assert run(capsys, "train", spec, "--out", run_dir, "--set", "epochs=2", "--quiet")[0] == 0
    rc, out = run(capsys, "train", spec, "--resume", run_dir, "--set", "optimizer=sgd(lr=0.1, momentum=0.9)")
    assert rc == 1 and "E742" in out and "Traceback" not in out, out


# ----------------------------------------------------------------------------------------------
# atomic checkpoints: a run that dies while writing epoch 3's checkpoint keeps epoch 2's

def _fail_np_savez(monkeypatch, state):
    real = np.savez

    def savez(file, *args, **arrays):
        if "meta" in arrays and meta_of(arrays)["epoch"] == 3:
            state["snapshot"] = (state["dir"] / "checkpoint.npz").read_bytes()
            real(file, *args, **{k: arrays[k] for k in list(arrays)[: len(arrays) // 2]})  # half of it
            raise OSError(28, "No space left on device")
        return real(file, *args, **arrays)
    monkeypatch.setattr(np, "savez", savez)


def _half_written_temp_file(monkeypatch, state):
    import nnc.runtime.weights as W
    real = W.atomic_write_with

    def atomic_write_with(path, write):
        if Path(path).name != "checkpoint.npz" or state.setdefault("calls", 0) < 2:
            if Path(path).name == "checkpoint.npz":
                state["calls"] += 1
            return real(path, write)
        state["snapshot"] = Path(path).read_bytes()

        def half(fh):
            buf = io.BytesIO()
            write(buf)
            data = buf.getvalue()
            fh.write(data[: len(data) // 2])
            fh.flush()
            raise KeyboardInterrupt          # Ctrl-C in the middle of writing the file
        return real(path, half)
    monkeypatch.setattr(W, "atomic_write_with", atomic_write_with)


def _replace_fails(monkeypatch, state):
    real = os.replace

    def replace(src, dst, *a, **kw):
        if Path(dst).name == "checkpoint.npz":
            state["calls"] = state.get("calls", 0) + 1
            if state["calls"] == 3:
                state["snapshot"] = Path(dst).read_bytes()
                raise KeyboardInterrupt      # killed after the temp file was written, before the rename
        return real(src, dst, *a, **kw)
    monkeypatch.setattr(nnc.util.os, "replace", replace)


@pytest.mark.parametrize("inject", [_fail_np_savez, _half_written_temp_file, _replace_fails],
                         ids=["np.savez raises", "half-written temp file", "killed before rename"])
def test_failure_while_writing_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch, inject):
    spec = write_spec(tmp_path)
    straight = tmp_path / "straight"
    assert run(capsys, "train", spec, "--out", straight, "--quiet")[0] == 0

    run_dir = tmp_path / "run"
    state = {"dir": run_dir}
    with monkeypatch.context() as mp:
        inject(mp, state)
        rc, out = run(capsys, "train", spec, "--out", run_dir, "--quiet")
    assert "snapshot" in state, "the injected failure never happened"
    assert rc in (1, 130), out
    assert "Traceback" not in out
    assert (run_dir / "checkpoint.npz").read_bytes() == state["snapshot"], "checkpoint.npz was modified"
    ckpt = npz(run_dir / "checkpoint.npz")                       # loads with allow_pickle=False
    assert meta_of(ckpt)["epoch"] == 2
    npz(run_dir / "weights.npz")
    assert temp_files(run_dir) == [], "temporary files left behind"

    rc, out = run(capsys, "train", spec, "--resume", run_dir, "--quiet")
    assert rc == 0, out
    assert_same_run(straight, run_dir)


def test_disk_full_while_writing_the_checkpoint_is_a_write_error(tmp_path, capsys, monkeypatch):
    spec = write_spec(tmp_path)
    state = {"dir": tmp_path / "run"}
    _fail_np_savez(monkeypatch, state)
    rc, out = run(capsys, "train", spec, "--out", tmp_path / "run", "--quiet")
    assert rc == 1
    assert "E764" in out and "checkpoint.npz" in out and "bug" not in out.lower(), out


KILL_SPEC = """
model killme {
    input pixels: [64]
    dense(256) -> relu
    dropout(0.1)
    dense(256) -> relu
    dense(10) -> softmax
}

train {
    data       = dataset("digits")
    validation = 0.1
    loss       = cross_entropy
    optimizer  = adam(lr=0.001)
    schedule   = cosine(warmup=2)
    epochs     = 60
    batch_size = 128
    seed       = 5
}
"""


def test_sigkill_at_random_moments_then_resume(tmp_path, capsys):
    """SIGKILL the trainer several times -- at random moments, and while a temporary checkpoint file
    is being written when the poll catches one -- then resume: checkpoint.npz always loads, and the
    run finally ends bit-identical to an uninterrupted one."""
    spec = write_spec(tmp_path, KILL_SPEC, "killme.nnspec")
    straight = tmp_path / "straight"
    assert run(capsys, "train", spec, "--out", straight, "--quiet")[0] == 0
    header, rows = history_rows(straight / "history.csv")
    epoch_seconds = float(np.median([float(r[header.index("seconds")]) for r in rows]))

    run_dir = tmp_path / "run"
    ckpt_path = run_dir / "checkpoint.npz"
    rnd = random.Random(1234)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "nnc.cli", "train", str(spec), "--quiet"]
    kills, mid_write, epochs_seen, finished = 0, 0, [], False
    for attempt in range(9):
        args = cmd + (["--resume", str(run_dir)] if ckpt_path.exists() else ["--out", str(run_dir)])
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if attempt < 6:
            # wait until the run has written a checkpoint newer than the one it started from
            start_mtime = ckpt_path.stat().st_mtime_ns if ckpt_path.exists() else 0
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                if ckpt_path.exists() and ckpt_path.stat().st_mtime_ns != start_mtime:
                    break
                time.sleep(0.002)
            if attempt % 2 == 0:
                # kill at a random moment within the next few epochs
                time.sleep(rnd.uniform(0.0, 4 * epoch_seconds))
            else:
                # kill as soon as a temporary file shows up (a write in progress), if the poll sees one
                deadline = time.monotonic() + 20 * epoch_seconds + 0.5
                while proc.poll() is None and time.monotonic() < deadline:
                    if any(name.endswith(".tmp") for name in os.listdir(run_dir)):
                        proc.send_signal(signal.SIGKILL)
                        mid_write += 1
                        break
                    time.sleep(0.0002)                # do not starve the trainer of a CPU
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            finished = True
        else:
            assert proc.returncode == -signal.SIGKILL, err.decode()
            kills += 1
        ckpt = npz(ckpt_path)                             # must load, whatever moment it died
        epochs_seen.append(meta_of(ckpt)["epoch"])
        npz(run_dir / "weights.npz")
        history_rows(run_dir / "history.csv")
        if finished:
            break
    where = f"checkpoints at epochs {epochs_seen}, {kills} kills, {mid_write} while a .tmp file existed"
    assert finished, f"the run never finished: {where}"
    assert kills >= 4, where
    assert epochs_seen == sorted(epochs_seen), where
    assert_same_run(straight, run_dir)


# ----------------------------------------------------------------------------------------------
# NaN guard

NAN_SPEC = """
model blowup {
    input pixels: [64]
    dense(32) -> relu
    dense(10) -> softmax
}

train {
    data       = dataset("digits")
    loss       = cross_entropy
    optimizer  = sgd(lr=0.05)
    epochs     = 4
    batch_size = 64
    seed       = 0
}
"""


def test_absurd_learning_rate_stops_with_E761(tmp_path, capsys):
    spec = write_spec(tmp_path, NAN_SPEC, "blowup.nnspec")
    rc, out = run(capsys, "train", spec, "--out", tmp_path / "run", "--set", "optimizer=sgd(lr=1e10)")
    assert rc == 1, out
    assert "E761" in out and "Traceback" not in out, out
    assert "epoch 1" in out and "batch " in out, out
    assert "blowup.nnspec" in out, out                    # the diagnostic names the spec


def test_nan_guard_prints_only_the_diagnostic(tmp_path):
    spec = write_spec(tmp_path, NAN_SPEC, "blowup.nnspec")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "nnc.cli", "train", str(spec), "--out", str(tmp_path / "run"),
                           "--quiet", "--set", "optimizer=sgd(lr=1e10)"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "E761" in proc.stderr
    assert "Warning" not in proc.stderr and ".py:" not in proc.stderr, proc.stderr


def test_nan_guard_keeps_the_last_good_checkpoint(tmp_path, capsys):
    spec = write_spec(tmp_path, NAN_SPEC, "blowup.nnspec")
    run_dir = tmp_path / "run"
    assert run(capsys, "train", spec, "--out", run_dir, "--set", "epochs=2", "--quiet")[0] == 0
    before = {n: (run_dir / n).read_bytes() for n in ("checkpoint.npz", "weights.npz", "history.csv")}
    rc, out = run(capsys, "train", spec, "--resume", run_dir, "--set", "epochs=4",
                  "--set", "optimizer=sgd(lr=1e10)")
    assert rc == 1, out
    assert "E761" in out and "epoch 3" in out and "batch " in out and "Traceback" not in out, out
    for n, data in before.items():
        assert (run_dir / n).read_bytes() == data, f"{n} changed after the NaN"
    assert meta_of(npz(run_dir / "checkpoint.npz"))["epoch"] == 2
    assert temp_files(run_dir) == []


# ----------------------------------------------------------------------------------------------
# early stopping

def test_early_stopping_keeps_the_last_epochs_weights(tmp_path, capsys):
    import nnc
    from nnc import data as D
    spec = write_spec(tmp_path)
    run_dir = tmp_path / "run"
    rc, out = run(capsys, "train", spec, "--out", run_dir, "--set", "epochs=200", "--set", "patience=2",
                  "--set", "optimizer=adam(lr=0.05)")
    assert rc == 0, out
    assert "early stopping" in out
    header, rows = history_rows(run_dir / "history.csv")
    n = len(rows)
    assert 2 < n < 200
    vl = [float(r[header.index("val_loss")]) for r in rows]
    assert min(vl[:-2]) <= min(vl[-2:]), "stopped although the validation loss improved"
    ckpt = npz(run_dir / "checkpoint.npz")
    assert meta_of(ckpt)["epoch"] == n and meta_of(ckpt)["stopped_early"] is True
    weights = npz(run_dir / "weights.npz")
    for k, v in weights.items():
        assert v.tobytes() == ckpt[f"weights/{k}"].tobytes()
    # the final weights are the last epoch's: their validation loss is the last row's
    model = nnc.load(spec)
    model.load_weights(run_dir / "weights.npz")
    ds = D.fit_to_input(D.load_source("dataset", {"name": "iris"}, tmp_path), (4,), "float32", "float32")
    _, val = D.split_validation(ds, 0.2, 3)
    assert model.evaluate(val.x, val.y)["loss"] == pytest.approx(vl[-1], rel=1e-5)
    # resuming a run that stopped early has nothing left to do
    rc, out = run(capsys, "train", spec, "--resume", run_dir, "--set", "epochs=200", "--set", "patience=2",
                  "--set", "optimizer=adam(lr=0.05)", "--quiet")
    assert rc == 0
    assert len(history_rows(run_dir / "history.csv")[1]) == n


# ----------------------------------------------------------------------------------------------
# one optimizer step through the Trainer, by hand

STEP_SPEC = """
model lin {
    input x: [3]
    dense(2)
}

train {
    loss       = mse
    optimizer  = sgd(lr=0.1)
    epochs     = 1
    batch_size = 8
    shuffle    = false
    dtype      = float64
}
"""


def _finite_difference_grads(graph, weights, x, y):
    from nnc.runtime.losses import loss_and_grad
    grads = {}
    for k in graph.trainable_keys():
        g = np.zeros_like(weights[k])
        for i in np.ndindex(g.shape):
            w = {kk: vv.copy() for kk, vv in weights.items()}
            w[k][i] += 1e-6
            lp = loss_and_grad("mse", {}, graph.forward({"x": x}, w)["output"], y)[0]
            w[k][i] -= 2e-6
            lm = loss_and_grad("mse", {}, graph.forward({"x": x}, w)["output"], y)[0]
            g[i] = (lp - lm) / 2e-6
        grads[k] = g
    return grads


@pytest.mark.parametrize("optimizer", ["sgd(lr=0.1)", "sgd(lr=0.1, momentum=0.9)", "adam(lr=0.01)"])
def test_trainer_steps_equal_hand_computed_updates(optimizer):
    from nnc.compiler.lower import compile_source, parse_overrides
    from nnc.runtime.graph import Graph
    from nnc.runtime.train import Trainer
    program = compile_source(STEP_SPEC, "<lin>", overrides=parse_overrides([f"optimizer={optimizer}"]))
    graph = Graph(program.model, "float64")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3))
    y = rng.standard_normal((16, 2))
    w0 = graph.init_weights(0)
    w0["dense_1.bias"] = rng.standard_normal(2)
    trainer = Trainer(graph, program.train, {"x": x}, y)
    state = trainer.new_state({k: v.copy() for k, v in w0.items()})
    trainer.train_epoch(state)                     # two batches of 8, in file order

    # by hand: mse over 2 outputs -> dL/dW = 2/(N*2) * (xW^T + b - y)^T x
    w = {k: v.copy() for k, v in w0.items()}
    buf = {k: np.zeros_like(v) for k, v in w.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v2 = {k: np.zeros_like(v) for k, v in w.items()}
    for step, sl in enumerate((slice(0, 8), slice(8, 16)), 1):
        xb, yb = x[sl], y[sl]
        r = xb @ w["dense_1.weight"].T + w["dense_1.bias"] - yb
        hand = {"dense_1.weight": 2 / r.size * r.T @ xb, "dense_1.bias": 2 / r.size * r.sum(0)}
        fd = _finite_difference_grads(graph, w, xb, yb)
        for k in hand:
            np.testing.assert_allclose(hand[k], fd[k], rtol=1e-6, atol=1e-9, err_msg=f"hand gradient of {k}")
        for k, g in hand.items():
            if optimizer == "sgd(lr=0.1)":
                w[k] = w[k] - 0.1 * g
            elif optimizer.startswith("sgd"):
                buf[k] = 0.9 * buf[k] + g if step > 1 else g.copy()
                w[k] = w[k] - 0.1 * buf[k]
            else:
                m[k] = 0.9 * m[k] + 0.1 * g
                v2[k] = 0.999 * v2[k] + 0.001 * g * g
                mhat, vhat = m[k] / (1 - 0.9 ** step), v2[k] / (1 - 0.999 ** step)
                w[k] = w[k] - 0.01 * mhat / (np.sqrt(vhat) + 1e-8)
    for k in w:
        np.testing.assert_allclose(state.weights[k], w[k], rtol=1e-10, atol=1e-12,
                                   err_msg=f"{optimizer}: {k} after two steps")
