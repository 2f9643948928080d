"""`normalize` fitted on data: before the first epoch of a run whose weights were not loaded, its
mean and population variance are NumPy's over exactly the training rows (the validation split
taken first), of the values that reach the layer; loaded weights (--init, --resume, load_weights)
keep theirs; the exported model takes raw features; a badly scaled CSV with `normalize` reaches
what the hand-scaled CSV reaches."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

import nnc
from nnc.cli import main
from nnc.data import split_indices

SPECS = Path(__file__).resolve().parents[1] / "specs"
COLUMNS = ["tiny", "small", "big", "huge", "offset"]
SCALES = np.array([1e-3, 0.5, 40.0, 3e4, 2.0])
OFFSETS = np.array([0.0, -3.0, 100.0, 1e5, 1e3])


def write_csv(path: Path, n: int = 120, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of badly scaled features (spreads from 0.001 to 30,000, offsets up to 1e5)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    z = rng.normal(0, 1, (n, len(COLUMNS))) + 1.5 * y[:, None] * np.array([1, -1, 1, 0.5, -0.5])
    x = z * SCALES + OFFSETS
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS + ["label"])
        for row, label in zip(x, y):
            w.writerow([repr(float(v)) for v in row] + [["no", "yes"][label]])
    return x, y


SPEC = """
model scaled {{
    input features: [5]
    {body}
    dense(2) -> softmax
}}

train {{
    data = csv("{data}", target="label")
    validation = {validation}
    loss = cross_entropy
    optimizer = adam(lr=0.01)
    epochs = {epochs}
    batch_size = 16
    dtype = {dtype}
}}
"""


def spec_file(tmp_path, *, body="normalize", validation=0.25, epochs=2, dtype="float64", data="data.csv",
              name="scaled.nnspec") -> Path:
    p = tmp_path / name
    p.write_text(SPEC.format(body=body, validation=validation, epochs=epochs, dtype=dtype, data=data))
    return p


def train(spec, out, *extra) -> dict:
    assert main(["train", str(spec), "--out", str(out), "--quiet", *extra]) == 0
    with np.load(out / "weights.npz") as w:
        return {k: w[k] for k in w.files}


@pytest.mark.parametrize("validation", [0.25, 0.0])
def test_statistics_are_numpys_over_exactly_the_training_rows(tmp_path, validation):
    x, _ = write_csv(tmp_path / "data.csv")
    w = train(spec_file(tmp_path, validation=validation), tmp_path / "run")
    rows = split_indices(len(x), validation, 0)[1] if validation else np.arange(len(x))
    assert len(rows) == (90 if validation else 120)
    np.testing.assert_allclose(w["normalize_1.mean"], x[rows].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(w["normalize_1.var"], x[rows].var(axis=0), rtol=1e-11)   # population variance
    if validation:   # not the statistics of all the rows
        assert not np.allclose(w["normalize_1.mean"], x.mean(axis=0), rtol=1e-6)


def test_float32_runs_accumulate_in_float64(tmp_path):
    x, _ = write_csv(tmp_path / "data.csv")
    w = train(spec_file(tmp_path, dtype="float32"), tmp_path / "run")
    rows = split_indices(len(x), 0.25, 0)[1]
    seen = x[rows].astype(np.float32).astype(np.float64)       # the values that reach the layer
    assert w["normalize_1.mean"].dtype == np.float32
    np.testing.assert_allclose(w["normalize_1.mean"], seen.mean(axis=0).astype(np.float32), rtol=1e-7)
    np.testing.assert_allclose(w["normalize_1.var"], seen.var(axis=0).astype(np.float32), rtol=1e-7)


def test_a_deeper_normalize_sees_the_previous_layers_at_initial_weights(tmp_path):
    x, y = write_csv(tmp_path / "data.csv")
    spec = spec_file(tmp_path, body="normalize -> dense(3) -> tanh -> normalize", validation=0.0, epochs=1)
    model = nnc.load(spec)
    w0 = {k: v.copy() for k, v in model.weights.items()}
    model.fit(x, np.array(["no", "yes"])[y])
    mean, var = x.mean(0), x.var(0)
    h = np.tanh(((x - mean) / np.sqrt(var + 1e-5)) @ w0["dense_1.weight"].T + w0["dense_1.bias"])
    np.testing.assert_allclose(model.weights["normalize_2.mean"], h.mean(0), rtol=1e-9)
    np.testing.assert_allclose(model.weights["normalize_2.var"], h.var(0), rtol=1e-9)


def test_normalize_on_an_axis_pools_the_other_positions(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (40, 2, 6)) * np.array([1.0, 50.0])[None, :, None] + np.array([3.0, -7.0])[None, :, None]
    spec = tmp_path / "axis.nnspec"
    spec.write_text("model a {\n    input x: [2, 6]\n    normalize(axis=0)\n    flatten\n    dense(2) -> softmax\n}\n"
                    "train {\n    loss = cross_entropy\n    epochs = 1\n    dtype = float64\n}\n")
    model = nnc.load(spec)
    model.fit(x, rng.integers(0, 2, 40))
    np.testing.assert_allclose(model.weights["normalize_1.mean"], x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(model.weights["normalize_1.var"], x.var(axis=(0, 2)), rtol=1e-12)


def test_the_api_fits_like_nnc_train_and_only_fresh_weights(tmp_path):
    x, y = write_csv(tmp_path / "data.csv")
    spec = spec_file(tmp_path)
    w = train(spec, tmp_path / "run")
    model = nnc.load(spec)
    model.fit(x, np.array(["no", "yes"])[y])          # the spec's validation = 0.25 is split off the same way
    for k in ("normalize_1.mean", "normalize_1.var"):
        np.testing.assert_array_equal(model.weights[k], w[k])
    fitted = model.weights["normalize_1.mean"].copy()
    model.fit(x * 2, np.array(["no", "yes"])[y], epochs=1)   # trained weights keep their statistics
    np.testing.assert_array_equal(model.weights["normalize_1.mean"], fitted)
    loaded = nnc.load(spec)
    loaded.load_weights(tmp_path / "run" / "weights.npz")
    loaded.fit(x * 3, np.array(["no", "yes"])[y], epochs=1)   # loaded weights too
    np.testing.assert_array_equal(loaded.weights["normalize_1.mean"], w["normalize_1.mean"])


def test_init_and_resume_keep_the_loaded_statistics(tmp_path):
    write_csv(tmp_path / "data.csv")
    spec = spec_file(tmp_path)
    w = train(spec, tmp_path / "run")
    start = dict(w)
    start["normalize_1.mean"] = np.full(5, 7.0)
    start["normalize_1.var"] = np.full(5, 2.0)
    np.savez(tmp_path / "start.npz", **start)
    w2 = train(spec, tmp_path / "run2", "--init", str(tmp_path / "start.npz"))
    np.testing.assert_array_equal(w2["normalize_1.mean"], start["normalize_1.mean"])
    np.testing.assert_array_equal(w2["normalize_1.var"], start["normalize_1.var"])
    assert main(["train", str(spec), "--resume", str(tmp_path / "run2"), "--quiet", "--set", "epochs=3"]) == 0
    with np.load(tmp_path / "run2" / "weights.npz") as w3:
        np.testing.assert_array_equal(w3["normalize_1.mean"], start["normalize_1.mean"])


def test_the_exported_model_takes_raw_features(tmp_path, capsys):
    import onnxruntime as ort

    x, _ = write_csv(tmp_path / "data.csv")
    spec = spec_file(tmp_path, dtype="float32", epochs=3)
    train(spec, tmp_path / "run")
    capsys.readouterr()
    assert main(["predict", str(spec), "--weights", str(tmp_path / "run" / "weights.npz"), "--input",
                 str(tmp_path / "data.csv"), "-o", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
    predicted = np.array([[float(r["out_0"]), float(r["out_1"])] for r in rows])
    sess = ort.InferenceSession(str(tmp_path / "run" / "model.onnx"))
    raw = sess.run(None, {"features": x.astype(np.float32)})[0]
    np.testing.assert_allclose(raw, predicted, rtol=1e-5, atol=1e-6)
    assert [r["label"] for r in rows] == [["no", "yes"][i] for i in raw.argmax(1)]


def test_a_badly_scaled_csv_reaches_the_hand_scaled_accuracy(tmp_path):
    """The breast cancer example's CSV (spreads 0.0026 to 569): `normalize` in the model against the
    same model without it on a CSV z-scored by hand with the training rows' statistics."""
    source = SPECS / "data" / "breast_cancer.csv"
    lines = source.read_text().splitlines()
    header = lines[0].split(",")
    x = np.array([[float(v) for v in line.split(",")[:-1]] for line in lines[1:]])
    labels = [line.split(",")[-1] for line in lines[1:]]
    rows = split_indices(len(x), 0.2, 0)[1]
    z = (x - x[rows].mean(0)) / x[rows].std(0)
    with (tmp_path / "scaled.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows([repr(float(v)) for v in row] + [label] for row, label in zip(z, labels))
    body = "normalize\n    dense(16) -> relu\n    dense(1) -> sigmoid"
    template = SPEC.replace("[5]", "[30]").replace("    dense(2) -> softmax\n", "").replace(
        "cross_entropy", "binary_cross_entropy").replace("{body}", body).replace('target="label"', 'target="diagnosis"')
    results = {}
    for name, data, text in (("model", source, template), ("hand", tmp_path / "scaled.csv",
                                                            template.replace("normalize\n    ", ""))):
        spec = tmp_path / f"{name}.nnspec"
        spec.write_text(text.format(data=data, validation=0.2, epochs=15, dtype="float32"))
        assert main(["train", str(spec), "--out", str(tmp_path / name), "--quiet"]) == 0
        results[name] = float(list(csv.DictReader(io.StringIO((tmp_path / name / "history.csv").read_text())))
                              [-1]["val_accuracy"])
    assert results["hand"] >= 0.95
    assert results["model"] >= results["hand"] - 1 / 114, results   # at most one of the 114 rows apart
