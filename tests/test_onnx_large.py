"""Models over protobuf's 2 GiB limit: ONNX external data (contract 6.3, docs/export.md).

The mechanism is tested on small models with ``nnc.onnx.export.EXTERNAL_DATA_THRESHOLD`` lowered to a
few KB: the same code path (arrays kept out of the proto, the pair staged and verified in a private
directory, data file first, then the model) as a real model over 2 GiB. The real thing runs only
with ``NNC_SLOW=1`` (about half a minute and 6 GB of RAM; also ``benchmarks/onnx_large.py``).
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cli_helpers import run
from nnc.onnx import export as E
from nnc.onnx import verify as V
from nnc.errors import NncError
from nnc.compiler.lower import compile_source
from nnc.onnx.emitters import EMITTERS, EXTERNAL_ALIGN, EXTERNAL_MIN_BYTES
from nnc.runtime.graph import Graph

ROOT = Path(__file__).resolve().parent.parent
SPEC = "model wide {\n    input x: [64]\n    dense(128) -> relu -> dense(10)\n}\n"
SMALL = 4096        # bytes: dense_1.weight (32 KiB) and dense_2.weight (5 KiB) go external, biases stay


@pytest.fixture
def external(monkeypatch):
    monkeypatch.setattr(E, "EXTERNAL_DATA_THRESHOLD", SMALL)


def program(src: str = SPEC):
    return compile_source(src, "wide.nnspec")


def weights(p, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = Graph(p.model).init_weights(0)
    return {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in w.items()}


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def assert_runs_like_numpy(path: Path, p, w) -> None:
    inputs = V.random_inputs(p.model, 6, seed=1)
    want = V.reference_outputs(p, w, inputs)["output"]
    V.compare("output", session(path).run(["output"], inputs)[0], want)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir()) if f.is_file()}


def test_large_weights_go_to_external_data_beside_the_model(tmp_path, external):
    p = program()
    p_w = weights(p)
    out = tmp_path / "wide.onnx"
    report = E.export_onnx(p, out, weights=p_w)
    assert f"weights in {tmp_path / 'wide.onnx.data'}" in report
    assert "verified: checker, shapes, onnxruntime max |diff|" in report
    assert sorted(os.listdir(tmp_path)) == ["wide.onnx", "wide.onnx.data"]      # no staging left
    m = onnx.load(str(out), load_external_data=False)
    where = {}
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            info = {e.key: e.value for e in t.external_data}
            assert info["location"] == "wide.onnx.data"                          # relative: the pair moves
            assert int(info["offset"]) % EXTERNAL_ALIGN == 0
            where[t.name] = (int(info["offset"]), int(info["length"]))
        else:
            assert t.HasField("raw_data") and len(t.raw_data) < EXTERNAL_MIN_BYTES
    assert set(where) == {"dense_1.weight", "dense_2.weight"}
    data = (tmp_path / "wide.onnx.data").read_bytes()
    for name, (offset, length) in where.items():
        np.testing.assert_array_equal(np.frombuffer(data[offset:offset + length], "<f4"), p_w[name].ravel())
    onnx.checker.check_model(str(out), full_check=True)
    full = onnx.load(str(out))                                                    # with its data
    got = {t.name: onnx.numpy_helper.to_array(t) for t in full.graph.initializer}
    for k, v in p_w.items():
        np.testing.assert_array_equal(got[k], v)
    # the pair moved together to another directory still loads and computes the same
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for f in ("wide.onnx", "wide.onnx.data"):
        shutil.move(str(tmp_path / f), str(moved / f))
    assert_runs_like_numpy(moved / "wide.onnx", p, p_w)


def test_small_models_stay_self_contained(tmp_path):
    out = tmp_path / "wide.onnx"
    report = E.export_onnx(program(), out)
    assert "weights in" not in report
    assert os.listdir(tmp_path) == ["wide.onnx"]
    m = onnx.load(str(out), load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in m.graph.initializer)


def test_no_verify_writes_the_pair_too(tmp_path, external):
    p = program()
    report = E.export_onnx(p, tmp_path / "wide.onnx", verify=False)
    assert report.endswith("not verified") and "weights in" in report
    assert sorted(os.listdir(tmp_path)) == ["wide.onnx", "wide.onnx.data"]
    assert_runs_like_numpy(tmp_path / "wide.onnx", p, E.resolve_weights(p))


def test_a_failed_verification_writes_nothing_and_replaces_nothing(tmp_path, external, monkeypatch):
    p = program()
    out = tmp_path / "wide.onnx"
    E.export_onnx(p, out)
    before = snapshot(tmp_path)

    def wrong_relu(e):
        return e.op("Sigmoid", [e.x])
    wrong_relu.min_opset = EMITTERS["relu"].min_opset
    monkeypatch.setitem(EMITTERS, "relu", wrong_relu)
    with pytest.raises(NncError) as err:
        E.export_onnx(p, out, weights=weights(p))
    assert err.value.diagnostics[0].code == "E803"
    assert snapshot(tmp_path) == before                                          # old pair intact
    assert sorted(os.listdir(tmp_path)) == ["wide.onnx", "wide.onnx.data"]      # no staging left
    fresh = tmp_path / "new"
    fresh.mkdir()
    with pytest.raises(NncError):
        E.export_onnx(p, fresh / "wide.onnx")
    assert os.listdir(fresh) == []


def test_a_new_pair_replaces_the_old_one(tmp_path, external):
    p = program()
    out = tmp_path / "wide.onnx"
    E.export_onnx(p, out)
    w = weights(p, seed=9)
    E.export_onnx(p, out, weights=w)
    assert sorted(os.listdir(tmp_path)) == ["wide.onnx", "wide.onnx.data"]
    assert_runs_like_numpy(out, p, w)


def test_a_small_model_over_a_pair_removes_the_orphaned_data(tmp_path, external, monkeypatch):
    p = program()
    out = tmp_path / "wide.onnx"
    E.export_onnx(p, out)
    monkeypatch.setattr(E, "EXTERNAL_DATA_THRESHOLD", E.PROTOBUF_LIMIT)
    E.export_onnx(p, out)
    assert os.listdir(tmp_path) == ["wide.onnx"]
    # a `.data` file the old model did not reference is someone else's: left alone
    (tmp_path / "wide.onnx.data").write_bytes(b"not ours")
    E.export_onnx(p, out)
    assert sorted(os.listdir(tmp_path)) == ["wide.onnx", "wide.onnx.data"]
    assert (tmp_path / "wide.onnx.data").read_bytes() == b"not ours"


def test_through_a_symlink_the_data_is_beside_the_target(tmp_path, external):
    store = tmp_path / "store"
    store.mkdir()
    (store / "real.onnx").write_bytes(b"old")
    link = tmp_path / "link.onnx"
    link.symlink_to(store / "real.onnx")
    p = program()
    report = E.export_onnx(p, link)
    assert f"weights in {store / 'real.onnx.data'}" in report
    assert link.is_symlink() and sorted(os.listdir(store)) == ["real.onnx", "real.onnx.data"]
    m = onnx.load(str(store / "real.onnx"), load_external_data=False)
    assert {e.value for t in m.graph.initializer for e in t.external_data if e.key == "location"} \
        == {"real.onnx.data"}
    assert_runs_like_numpy(store / "real.onnx", p, E.resolve_weights(p))


def test_permissions_of_the_existing_pair_are_kept(tmp_path, external):
    p = program()
    out = tmp_path / "wide.onnx"
    E.export_onnx(p, out)
    out.chmod(0o600)
    (tmp_path / "wide.onnx.data").chmod(0o640)
    E.export_onnx(p, out, weights=weights(p))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "wide.onnx.data").stat().st_mode) == 0o640


def test_a_data_path_that_is_not_a_file_is_e804_before_any_work(tmp_path, external):
    (tmp_path / "wide.onnx.data").mkdir()
    with pytest.raises(NncError) as err:
        E.export_onnx(program(), tmp_path / "wide.onnx")
    (d,) = err.value.diagnostics
    assert d.code == "E804" and "wide.onnx.data" in d.message and "directory" in d.message
    assert os.listdir(tmp_path) == ["wide.onnx.data"] and os.listdir(tmp_path / "wide.onnx.data") == []


def test_cli_compile_writes_the_pair(tmp_path, capsys, external):
    spec = tmp_path / "wide.nnspec"
    spec.write_text(SPEC)
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    code, _, err = run(["compile", spec, "-o", out], capsys)
    assert code == 0, err
    assert f"wrote {out} (opset " in err and f"weights in {out}.data" in err
    assert sorted(os.listdir(out.parent)) == ["m.onnx", "m.onnx.data"]


def test_train_writes_model_onnx_with_its_data_into_the_run(tmp_path, capsys, external):
    """`nnc train` exports through the same function: model.onnx + model.onnx.data in the run."""
    spec = tmp_path / "xor.nnspec"
    spec.write_text("model xor {\n    input x: [2]\n    dense(512) -> tanh -> dense(1) -> sigmoid\n}\n"
                    "train {\n    data = dataset(\"xor\")\n    loss = binary_cross_entropy\n"
                    "    epochs = 2\n    batch_size = 4\n}\n")
    run_dir = tmp_path / "run"
    code, _, err = run(["train", spec, "--out", run_dir], capsys)
    assert code == 0, err
    assert (run_dir / "model.onnx").is_file() and (run_dir / "model.onnx.data").is_file(), err
    assert f"weights in {run_dir / 'model.onnx.data'}" in err
    import nnc
    model = nnc.load(spec)
    model.load_weights(run_dir / "weights.npz")
    x = np.random.default_rng(0).standard_normal((7, 2)).astype(np.float32)
    got = session(run_dir / "model.onnx").run(None, {"x": x})[0]
    np.testing.assert_allclose(got, model.predict(x), atol=1e-5, rtol=1e-4)


def test_external_mode_with_nothing_large_enough_stays_one_file(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "EXTERNAL_DATA_THRESHOLD", 16)      # over it, yet every tensor < 1 KiB
    report = E.export_onnx(program("model t {\n    input x: [4]\n    dense(3)\n}\n"), tmp_path / "t.onnx")
    assert "weights in" not in report and os.listdir(tmp_path) == ["t.onnx"]


@pytest.mark.skipif(not os.environ.get("NNC_SLOW"), reason="over 2 GiB of weights: set NNC_SLOW=1")
def test_a_model_over_2_gib_exports_with_external_data_and_verifies(tmp_path):
    """The real thing, as a user runs it: 541M float32 parameters (2.02 GiB), default threshold."""
    spec = tmp_path / "big.nnspec"
    spec.write_text("model big {\n    input x: [8192]\n"
                    "    dense(16384) -> relu -> dense(16384) -> relu -> dense(8448)\n}\n")
    out = tmp_path / "big.onnx"
    r = subprocess.run([sys.executable, "-m", "nnc.cli", "compile", str(spec), "-o", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "verified: checker, shapes, onnxruntime" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["big.nnspec", "big.onnx", "big.onnx.data"]
    assert (tmp_path / "big.onnx.data").stat().st_size > E.PROTOBUF_LIMIT
    assert out.stat().st_size < 2**20
    onnx.checker.check_model(str(out), full_check=True)
    y = session(out).run(None, {"x": np.ones((2, 8192), np.float32)})[0]
    assert y.shape == (2, 8448) and np.isfinite(y).all()
