"""The training verbs as a user runs them: ``nnc train`` / ``evaluate`` / ``predict``.

* the run directory: weights.npz, checkpoint.npz, history.csv (exact columns), model.onnx;
  ``--out``, ``--set``, ``--init``, ``--data``, ``--quiet``;
* ``evaluate`` and ``predict`` (.npy / .npz / .csv in, .npy / .npz / .csv / stdout out) agree with
  the Python API;
* bad input, each through the command line: exit code 1, a message that names the file, key, column or
  batch, and never a traceback (a wrong command line is exit code 2).

Everything runs in this process through ``nnc.cli.main`` except the tests that must survive a crash
(memory limit), which use a subprocess.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnc
from nnc.cli import main
from nnc import data as D

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"



def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def history(path: Path) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(Path(path).read_text())))
    return rows[0], rows[1:]


def iris() -> tuple[np.ndarray, np.ndarray, list[str]]:
    ds = D.load_source("dataset", {"name": "iris"}, ROOT)
    return ds.x, ds.y, ds.labels


def write_iris_csv(path: Path, *, string_target: bool = True) -> Path:
    x, y, labels = iris()
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width", "species"])
        for xi, yi in zip(x, y):
            w.writerow([f"{v:.1f}" for v in xi] + [labels[yi] if string_target else int(yi)])
    return path


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    """One trained iris run, shared by the evaluate / predict tests."""
    out = tmp_path_factory.mktemp("iris") / "run"
    assert main(["train", str(SPECS / "iris_mlp.nnspec"), "--out", str(out), "--set", "epochs=30",
                 "--quiet"]) == 0
    return out


# ----------------------------------------------------------------------------------------------
# the run directory

@pytest.mark.parametrize("spec,epochs,columns", [
    ("iris_mlp", 3, ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]),
    ("xor_mlp", 3, ["epoch", "loss", "accuracy", "lr", "seconds"]),
    ("sine_lstm", 2, ["epoch", "loss", "mae", "val_loss", "val_mae", "lr", "seconds"]),
    ("sequence_classifier", 1, ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]),
])
def test_run_directory_and_history_columns(tmp_path, capsys, spec, epochs, columns):
    out = tmp_path / "run"
    rc, stdout, err = run(capsys, "train", SPECS / f"{spec}.nnspec", "--out", out, "--set", f"epochs={epochs}")
    assert rc == 0, err
    for name in ("weights.npz", "checkpoint.npz", "history.csv"):
        assert (out / name).is_file(), f"{name} missing"
    header, rows = history(out / "history.csv")
    assert header == columns
    assert [int(r[0]) for r in rows] == list(range(1, epochs + 1))
    for r in rows:
        vals = [float(v) for v in r]
        assert all(np.isfinite(vals))
        assert vals[header.index("seconds")] > 0
    model = nnc.load(SPECS / f"{spec}.nnspec")
    weights = npz(out / "weights.npz")
    assert sorted(weights) == sorted(model.weights)
    ckpt = npz(out / "checkpoint.npz")
    for k, v in weights.items():
        assert v.dtype == np.float32 and v.shape == model.weights[k].shape
        assert np.array_equal(ckpt[f"weights/{k}"], v)
    assert json.loads(str(ckpt["meta"]))["epoch"] == epochs
    assert f"epoch {epochs}/{epochs}" in err                    # per-epoch progress on stderr
    assert stdout.startswith(spec) and f"{epochs} epoch" in stdout


def test_train_writes_model_onnx_that_matches_the_runtime(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", SPECS / "iris_mlp.nnspec", "--out", out, "--set", "epochs=3")
    assert rc == 0, err
    assert (out / "model.onnx").is_file(), err
    import onnx
    import onnxruntime as ort
    onnx.checker.check_model(onnx.load(str(out / "model.onnx")), full_check=True)
    model = nnc.load(SPECS / "iris_mlp.nnspec")
    model.load_weights(out / "weights.npz")
    x = iris()[0][:10].astype(np.float32)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"features": x})[0]
    np.testing.assert_allclose(got, model.predict(x), atol=1e-5, rtol=1e-4)


def test_default_run_directory_is_runs_model(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, "train", SPECS / "xor_mlp.nnspec", "--set", "epochs=2", "--quiet")
    assert rc == 0, err
    assert (tmp_path / "runs" / "xor_mlp" / "weights.npz").is_file()


def test_quiet_prints_only_the_result(tmp_path, capsys):
    rc, out, err = run(capsys, "train", SPECS / "iris_mlp.nnspec", "--out", tmp_path / "r", "--set", "epochs=2",
                       "--quiet")
    assert rc == 0
    assert err == "", err
    assert out.count("\n") == 1 and out.startswith("iris_mlp: 2 epochs") and "val_accuracy" in out


def test_set_overrides_train_keys_and_let_constants(tmp_path, capsys):
    out = tmp_path / "r"
    spec = tmp_path / "iris.nnspec"        # iris_mlp without its `assert params == 131`
    spec.write_text("\n".join(line for line in (SPECS / "iris_mlp.nnspec").read_text().splitlines()
                              if "assert params" not in line))
    rc, _, err = run(capsys, "train", spec, "--out", out, "--set", "hidden=8",
                     "--set", "epochs=2", "--set", "optimizer=sgd(lr=0.05, momentum=0.9)",
                     "--set", "metrics=[accuracy, mse]", "--set", "validation=0")
    assert rc == 0, err
    assert npz(out / "weights.npz")["dense_1.weight"].shape == (8, 4)
    header, rows = history(out / "history.csv")
    assert header == ["epoch", "loss", "accuracy", "mse", "lr", "seconds"]
    assert len(rows) == 2 and float(rows[0][header.index("lr")]) == 0.05
    assert any(k.startswith("optimizer/sgd.momentum_buffer") for k in npz(out / "checkpoint.npz"))


def test_init_starts_from_given_weights_like_the_api(tmp_path, capsys):
    first = tmp_path / "first"
    assert run(capsys, "train", SPECS / "iris_mlp.nnspec", "--out", first, "--set", "epochs=20", "--quiet")[0] == 0
    second = tmp_path / "second"
    rc, _, err = run(capsys, "train", SPECS / "iris_mlp.nnspec", "--out", second, "--init", first / "weights.npz",
                     "--set", "epochs=1", "--quiet")
    assert rc == 0, err
    # the same thing through the Python API: load the weights, fit one epoch -> bit-identical
    model = nnc.load(SPECS / "iris_mlp.nnspec")
    model.load_weights(first / "weights.npz")
    x, y, _ = iris()
    model.fit(x, y, epochs=1)
    got = npz(second / "weights.npz")
    for k, v in model.weights.items():
        assert got[k].tobytes() == v.tobytes(), f"--init run differs from Model.fit at {k}"
    fresh = tmp_path / "fresh"
    assert run(capsys, "train", SPECS / "iris_mlp.nnspec", "--out", fresh, "--set", "epochs=1", "--quiet")[0] == 0
    assert float(history(second / "history.csv")[1][0][1]) < 0.5 * float(history(fresh / "history.csv")[1][0][1])


def test_data_override_with_a_csv_of_string_labels(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # --data paths are relative to the working directory
    write_iris_csv(tmp_path / "flowers.csv")
    out = tmp_path / "r"
    rc, stdout, err = run(capsys, "train", SPECS / "iris_mlp.nnspec", "--out", out, "--set", "epochs=40",
                          "--data", 'csv("flowers.csv", target="species")')
    assert rc == 0, err
    assert "flowers.csv" in err and "120 examples, 30 for validation" in err
    assert json.loads((out / "data.json").read_text())["labels"] == ["setosa", "versicolor", "virginica"]
    header, rows = history(out / "history.csv")
    assert float(rows[-1][header.index("val_accuracy")]) >= 0.9
    # a bare .csv path: the last column is the target
    rc, _, err = run(capsys, "train", SPECS / "iris_mlp.nnspec", "--out", tmp_path / "r2", "--set", "epochs=1",
                     "--data", "flowers.csv", "--quiet")
    assert rc == 0, err


def test_data_override_with_npz(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y, _ = iris()
    np.savez(tmp_path / "arrays.npz", features=x, species=y)
    rc, _, err = run(capsys, "train", SPECS / "iris_mlp.nnspec", "--out", tmp_path / "r", "--set", "epochs=2",
                     "--data", 'npz("arrays.npz", x="features", y="species")', "--quiet")
    assert rc == 0, err
    # same arrays, same seed: the same run as the built-in data set
    rc, _, err = run(capsys, "train", SPECS / "iris_mlp.nnspec", "--out", tmp_path / "b", "--set", "epochs=2",
                     "--quiet")
    assert rc == 0
    a, b = npz(tmp_path / "r" / "weights.npz"), npz(tmp_path / "b" / "weights.npz")
    for k in a:
        assert np.array_equal(a[k], b[k]), k


# ----------------------------------------------------------------------------------------------
# evaluate and predict

def test_evaluate_prints_what_model_evaluate_returns(iris_run, capsys, tmp_path, monkeypatch):
    rc, out, err = run(capsys, "evaluate", SPECS / "iris_mlp.nnspec", "--weights", iris_run / "weights.npz")
    assert rc == 0, err
    model = nnc.load(SPECS / "iris_mlp.nnspec")
    model.load_weights(iris_run / "weights.npz")
    x, y, _ = iris()
    res = model.evaluate(x, y)
    assert f"loss {res['loss']:.4f}" in out and f"accuracy {res['accuracy']:.4f}" in out, out
    assert "150 examples" in out
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "few.npz", x=x[:20], y=y[:20])
    rc, out, err = run(capsys, "evaluate", SPECS / "iris_mlp.nnspec", "--weights", iris_run / "weights.npz",
                       "--data", 'npz("few.npz")')
    assert rc == 0, err
    res = model.evaluate(x[:20], y[:20])
    assert "20 examples" in out and f"loss {res['loss']:.4f}" in out, out


@pytest.mark.parametrize("fmt_in", [".npy", ".npz", ".csv"])
@pytest.mark.parametrize("fmt_out", [".npy", ".npz", ".csv", "stdout"])
def test_predict_formats_agree_with_model_predict(iris_run, capsys, tmp_path, fmt_in, fmt_out):
    x = iris()[0][::7]
    src = tmp_path / f"inputs{fmt_in}"
    if fmt_in == ".npy":
        np.save(src, x)
    elif fmt_in == ".npz":
        np.savez(src, x=x)
    else:
        np.savetxt(src, x, delimiter=",", header="a,b,c,d", comments="", fmt="%.1f")
    model = nnc.load(SPECS / "iris_mlp.nnspec")
    model.load_weights(iris_run / "weights.npz")
    expected = model.predict(np.round(x, 1) if fmt_in == ".csv" else x)
    argv = ["predict", SPECS / "iris_mlp.nnspec", "--weights", iris_run / "weights.npz", "--input", src]
    if fmt_out == "stdout":
        rc, out, err = run(capsys, *argv)
        assert rc == 0, err
        got = np.loadtxt(io.StringIO(out), delimiter=",", ndmin=2, usecols=(0, 1, 2))   # then the label
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        return
    dest = tmp_path / f"preds{fmt_out}"
    rc, out, err = run(capsys, *argv, "-o", dest)
    assert rc == 0, err
    assert f"{len(x)} rows" in err
    if fmt_out == ".npy":
        got = np.load(dest, allow_pickle=False)
    elif fmt_out == ".npz":
        got = npz(dest)["output"]
    else:
        lines = dest.read_text().splitlines()
        assert lines[0] == "out_0,out_1,out_2,label"      # iris carries its class names
        got = np.loadtxt(dest, delimiter=",", skiprows=1, ndmin=2, usecols=(0, 1, 2)).astype(np.float32)
    assert got.shape == expected.shape == (len(x), 3)
    np.testing.assert_array_equal(got, expected)     # .csv keeps 9 significant digits: exact float32


def test_predict_reshapes_images_for_a_dense_model(tmp_path, capsys):
    out = tmp_path / "r"
    assert run(capsys, "train", SPECS / "digits_mlp.nnspec", "--out", out, "--set", "epochs=1", "--quiet")[0] == 0
    images = D.load_source("dataset", {"name": "digits"}, ROOT).x[:5]          # (5, 1, 8, 8)
    np.save(tmp_path / "img.npy", images)
    rc, _, err = run(capsys, "predict", SPECS / "digits_mlp.nnspec", "--weights", out / "weights.npz",
                     "--input", tmp_path / "img.npy", "-o", tmp_path / "p.npy")
    assert rc == 0, err
    assert np.load(tmp_path / "p.npy").shape == (5, 10)


# ----------------------------------------------------------------------------------------------
# bad input: exit 1, a message naming the culprit, no traceback

DIGITS_INTO_5 = """
model d5 {
    input pixels: [64]
    dense(5) -> softmax
}
train {
    data = npz("digits.npz")
    loss = cross_entropy
    epochs = 1
}
"""


class Marker:
    """Unpickling this object creates a file: proof that something was unpickled."""

    path = ""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _make_bad(tmp_path: Path, case: str, iris_weights: Path):
    """(argv, exit code, [substrings the message must contain]) for one bad-input case."""
    spec = SPECS / "iris_mlp.nnspec"
    t = tmp_path
    x, y, _ = iris()
    train = ["train", spec, "--out", t / "run", "--quiet"]
    w = npz(iris_weights)
    if case == "missing data file":
        return train + ["--data", 'csv("nowhere.csv", target="y")'], 1, ["E702", "nowhere.csv"]
    if case == "data file is a folder":
        (t / "folder.csv").mkdir()
        return train + ["--data", 'csv("folder.csv", target="y")'], 1, ["E702", "folder.csv"]
    if case == "garbage npz":
        (t / "garbage.npz").write_bytes(b"this is not a zip file at all")
        return train + ["--data", 'npz("garbage.npz")'], 1, ["E708", "garbage.npz"]
    if case == "truncated npz":
        np.savez(t / "full.npz", x=x, y=y)
        (t / "cut.npz").write_bytes((t / "full.npz").read_bytes()[:300])
        return train + ["--data", 'npz("cut.npz")'], 1, ["E708", "cut.npz"]
    if case == "csv not utf-8":
        (t / "latin.csv").write_bytes("a,b,c,d,caf\xe9\n1,2,3,4,0\n".encode("latin-1"))
        return train + ["--data", 'csv("latin.csv", target="a")'], 1, ["E703", "latin.csv"]
    if case == "x/y length mismatch":
        np.savez(t / "mismatch.npz", x=x[:10], y=y[:9])
        return train + ["--data", 'npz("mismatch.npz")'], 1, ["E732", "mismatch.npz", "10", "9"]
    if case == "feature shape does not match the input":
        np.savez(t / "five.npz", x=np.ones((10, 5)), y=y[:10])
        return train + ["--data", 'npz("five.npz")'], 1, ["E731", "five.npz", "[5]", "[4]"]
    if case == "labels out of range":
        digits = D.load_source("dataset", {"name": "digits"}, ROOT)
        np.savez(t / "digits.npz", x=digits.x.reshape(-1, 64)[:50], y=digits.y[:50])
        (t / "d5.nnspec").write_text(DIGITS_INTO_5)
        return ["train", t / "d5.nnspec", "--out", t / "run"], 1, ["E740", "label 9", "5 classes"]
    if case == "labels out of range (built-in data)":
        (t / "d5b.nnspec").write_text(DIGITS_INTO_5.replace('npz("digits.npz")', 'dataset("digits")'))
        return ["train", t / "d5b.nnspec", "--out", t / "run"], 1, ["E606", "10 classes", "5 units"]
    if case == "NaN in data":
        xn = x.copy()
        xn[7, 2] = np.nan
        np.savez(t / "nan.npz", x=xn, y=y)
        return train + ["--data", 'npz("nan.npz")'], 1, ["E733", "nan.npz", "row 8"]
    if case == "inf in targets":
        np.savez(t / "inf.npz", x=np.ones((6, 1, 1)), y=np.array([[0.], [1], [np.inf], [1], [0], [1]]))
        (t / "reg.nnspec").write_text("model reg {\n input v: [1, 1]\n flatten\n dense(1)\n}\n"
                                      "train {\n data = npz(\"inf.npz\")\n loss = mse\n}\n")
        return ["train", t / "reg.nnspec", "--out", t / "run"], 1, ["E733", "inf.npz", "y", "row 3"]
    if case == "CSV hole":
        (t / "holes.csv").write_text("a,b,c,d,label\n1,2,3,4,0\n5,6,,8,1\n")
        return train + ["--data", 'csv("holes.csv", target="label")'], 1, ["E706", "holes.csv:3", '"c"']
    if case == "CSV NaN text":
        (t / "nantext.csv").write_text("a,b,c,d,label\n1,2,3,4,0\n5,nan,7,8,1\n")
        return train + ["--data", 'csv("nantext.csv", target="label")'], 1, ["E733", "nantext.csv", '"b"']
    if case == "CSV non-numeric feature":
        (t / "words.csv").write_text("a,b,c,d,label\n1,2,3,4,0\n5,6,seven,8,1\n")
        return train + ["--data", 'csv("words.csv", target="label")'], 1, ["E705", "words.csv:3", "seven", '"c"']
    if case == "CSV missing target column":
        write_iris_csv(t / "flowers.csv")
        return train + ["--data", 'csv("flowers.csv", target="specie")'], 1, ["E704", "specie", "species"]
    if case == "not an npz: weights file":
        (t / "w.npz").write_text("hello")
        return ["evaluate", spec, "--weights", t / "w.npz"], 1, ["E750", "w.npz"]
    if case.startswith("weights"):
        verb = case.split()[-1]
        what = case.split()[1]
        bad = dict(w)
        if what == "missing":
            del bad["dense_2.bias"]
            expect = ["E751", "dense_2.bias"]
        elif what == "extra":
            bad["dense_9.weight"] = np.zeros((2, 2), np.float32)
            expect = ["E752", "dense_9.weight"]
        elif what == "shape":
            bad["dense_1.weight"] = np.zeros((16, 5), np.float32)
            expect = ["E753", "dense_1.weight", "[16, 5]", "[16, 4]"]
        else:  # nan
            bad["dense_1.bias"] = np.full(16, np.nan, np.float32)
            expect = ["E754", "dense_1.bias"]
        np.savez(t / f"bad_{what}.npz", **bad)
        expect.append(f"bad_{what}.npz")
        if verb == "evaluate":
            return ["evaluate", spec, "--weights", t / f"bad_{what}.npz"], 1, expect
        if verb == "predict":
            np.save(t / "in.npy", x[:3])
            return ["predict", spec, "--weights", t / f"bad_{what}.npz", "--input", t / "in.npy"], 1, expect
        return train + ["--init", t / f"bad_{what}.npz"], 1, expect
    if case == "unknown --set key":
        return train + ["--set", "epocs=3"], 1, ["E307", "epocs", "epochs"]
    if case == "malformed --set":
        return train + ["--set", "epochs"], 1, ["E102", "KEY=VALUE"]
    if case == "--resume without a checkpoint":
        (t / "emptyrun").mkdir()
        return ["train", spec, "--resume", t / "emptyrun"], 1, ["E762", "emptyrun", "checkpoint.npz"]
    if case == "--resume with a corrupt checkpoint":
        (t / "corrupt").mkdir()
        (t / "corrupt" / "checkpoint.npz").write_bytes(b"PK\x03\x04garbage")
        return ["train", spec, "--resume", t / "corrupt"], 1, ["E750", "checkpoint.npz"]
    if case == "--resume with a weights file as checkpoint":
        (t / "notckpt").mkdir()
        np.savez(t / "notckpt" / "checkpoint.npz", **w)
        return ["train", spec, "--resume", t / "notckpt"], 1, ["E762", "checkpoint.npz"]
    if case == "no train block":
        return ["train", SPECS / "two_input_concat.nnspec", "--out", t / "run"], 1, ["E608", "two_input_concat"]
    if case == "no data":
        (t / "nodata.nnspec").write_text("model m {\n input x: [4]\n dense(3) -> softmax\n}\n"
                                         "train {\n loss = cross_entropy\n}\n")
        return ["train", t / "nodata.nnspec", "--out", t / "run"], 1, ["E607"]
    if case == "predict: unknown output type":
        np.save(t / "in.npy", x[:3])
        return ["predict", spec, "--weights", iris_weights, "--input", t / "in.npy", "-o", t / "p.txt"], 1, \
            ["E765", "p.txt"]
    if case == "predict: input of the wrong shape":
        np.save(t / "in.npy", np.ones((3, 7)))
        return ["predict", spec, "--weights", iris_weights, "--input", t / "in.npy"], 1, ["E731", "[7]", "[4]"]
    if case == "predict: unknown input type":
        (t / "in.txt").write_text("1,2,3,4\n")
        return ["predict", spec, "--weights", iris_weights, "--input", t / "in.txt"], 1, ["E702", "in.txt"]
    if case == "run directory not writable":
        (t / "file").write_text("")
        return ["train", spec, "--out", t / "file" / "run", "--set", "epochs=1"], 1, ["E764", "file"]
    raise AssertionError(case)


BAD_CASES = [
    "missing data file", "data file is a folder", "garbage npz", "truncated npz", "csv not utf-8",
    "x/y length mismatch", "feature shape does not match the input", "labels out of range",
    "labels out of range (built-in data)", "NaN in data", "inf in targets", "CSV hole", "CSV NaN text",
    "CSV non-numeric feature", "CSV missing target column",
    *(f"weights {what} {verb}" for what in ("missing", "extra", "shape", "nan")
      for verb in ("evaluate", "predict", "--init")),
    "not an npz: weights file", "unknown --set key", "malformed --set", "--resume without a checkpoint",
    "--resume with a corrupt checkpoint", "--resume with a weights file as checkpoint", "no train block",
    "no data", "predict: unknown output type", "predict: input of the wrong shape",
    "predict: unknown input type", "run directory not writable",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_a_located_error(tmp_path, capsys, monkeypatch, iris_run, case):
    monkeypatch.chdir(tmp_path)
    argv, code, expect = _make_bad(tmp_path, case, iris_run / "weights.npz")
    rc, out, err = run(capsys, *argv)
    text = out + err
    assert rc == code, f"{case}: exit {rc}\n{text}"
    assert "Traceback" not in text and "internal error" not in text, text
    assert "<input>" not in text, f"{case}: the diagnostic names no file:\n{text}"
    for s in expect:
        assert s in text, f"{case}: {s!r} not in the message:\n{text}"


@pytest.mark.parametrize("argv", [
    ["train", "nope.nnspec"],
    ["train", SPECS / "iris_mlp.nnspec", "--resume", "no-such-dir"],
    ["train", SPECS / "iris_mlp.nnspec", "--init", "no-such.npz"],
    ["evaluate", SPECS / "iris_mlp.nnspec"],
    ["predict", SPECS / "iris_mlp.nnspec", "--weights", "no-such.npz", "--input", "x.npy"],
    ["train", SPECS / "iris_mlp.nnspec", "--epochs", "3"],
])
def test_wrong_command_line_is_exit_2(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:     # argparse errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err


@pytest.mark.parametrize("where", ["--weights", "--init", "--data", "--input npy", "--input npz", "--resume"])
def test_pickled_object_arrays_are_never_loaded(tmp_path, capsys, monkeypatch, iris_run, where):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "UNPICKLED"
    evil = np.array([Marker(marker)], dtype=object)
    # the marker works: loading with allow_pickle=True would create the file
    np.save(tmp_path / "probe.npy", evil, allow_pickle=True)
    np.load(tmp_path / "probe.npy", allow_pickle=True)
    assert marker.exists()
    marker.unlink()

    spec = SPECS / "iris_mlp.nnspec"
    w = npz(iris_run / "weights.npz")
    poisoned = {**w, "dense_1.bias": evil}
    x, y, _ = iris()
    if where in ("--weights", "--init"):
        np.savez(tmp_path / "evil.npz", **poisoned)
        argv = (["evaluate", spec, "--weights", "evil.npz"] if where == "--weights"
                else ["train", spec, "--init", "evil.npz", "--out", "run"])
        expect = "E750"
    elif where == "--data":
        np.savez(tmp_path / "evil.npz", x=evil, y=y[:1])
        argv = ["train", spec, "--data", 'npz("evil.npz")', "--out", "run"]
        expect = "E708"
    elif where == "--input npy":
        np.save(tmp_path / "evil.npy", evil, allow_pickle=True)
        argv = ["predict", spec, "--weights", iris_run / "weights.npz", "--input", "evil.npy"]
        expect = "E708"
    elif where == "--input npz":
        np.savez(tmp_path / "evil.npz", x=evil)
        argv = ["predict", spec, "--weights", iris_run / "weights.npz", "--input", "evil.npz"]
        expect = "E708"
    else:
        (tmp_path / "run").mkdir()
        ckpt = npz(iris_run / "checkpoint.npz")
        ckpt["weights/dense_1.bias"] = evil
        np.savez(tmp_path / "run" / "checkpoint.npz", **ckpt)
        argv = ["train", spec, "--resume", "run"]
        expect = "E750"
    rc, out, err = run(capsys, *argv)
    assert rc == 1, out + err
    assert expect in out + err and "pickle" in (out + err).lower(), out + err
    assert "Traceback" not in out + err
    assert not marker.exists(), "a pickled object was unpickled"


def test_model_too_large_is_refused_before_allocating(tmp_path):
    """dense(2_000_000) on [100_000] is 200 billion parameters (745 GiB): E760 with the numbers, before
    any allocation. The child runs under a 4 GiB address-space limit, so an attempt to allocate the
    weights would fail (MemoryError, an internal error) instead of passing."""
    np.savez(tmp_path / "tiny.npz", x=np.zeros((2, 100_000), np.float32), y=np.zeros((2, 2), np.float32))
    (tmp_path / "big.nnspec").write_text(
        "model big {\n    input x: [100_000]\n    dense(2_000_000)\n    dense(2)\n}\n"
        "train {\n    data = npz(\"tiny.npz\")\n    loss = mse\n}\n")
    code = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from nnc.cli import main
rc = main(sys.argv[1:])
if rc == 0 or sys.argv[1] != "train":
    sys.exit(rc)
import nnc
try:
    nnc.load("big.nnspec")
except nnc.NncError as e:
    print("API:", e.diagnostics[0].code, e.diagnostics[0].message, file=sys.stderr)
    sys.exit(rc)
sys.exit(3)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code, "train", "big.nnspec", "--out", "run"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "Traceback" not in text and "internal error" not in text and "MemoryError" not in text, text
    assert "E760" in text and "200,006,000,002" in text and "GiB" in text, text
    assert "API: E760" in text, text
    assert not (tmp_path / "run" / "weights.npz").exists()


def test_a_text_file_as_weights_is_not_called_a_pickle(tmp_path, capsys):
    (tmp_path / "w.npz").write_text("hello")
    rc, out, err = run(capsys, "evaluate", SPECS / "iris_mlp.nnspec", "--weights", tmp_path / "w.npz")
    assert rc == 1 and "E750" in err
    assert "pickle" not in err.lower(), err
