"""The Python API: ``nnc.load(path)`` -> Model with fit / predict / evaluate / save_weights /
load_weights / export, used as a notebook user would."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnc
from nnc.cli import main
from nnc import data as D

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"



def dataset(name: str):
    return D.load_source("dataset", {"name": name}, ROOT)


def npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_load_compiles_and_initialises_from_the_seed():
    m = nnc.load(SPECS / "iris_mlp.nnspec")
    assert isinstance(m, nnc.Model)
    assert m.name == "iris_mlp"
    assert {k: v.shape for k, v in m.weights.items()} == {
        "dense_1.weight": (16, 4), "dense_1.bias": (16,), "dense_2.weight": (3, 16), "dense_2.bias": (3,)}
    assert all(v.dtype == np.float32 for v in m.weights.values())
    again = nnc.load(SPECS / "iris_mlp.nnspec")
    for k in m.weights:
        assert np.array_equal(m.weights[k], again.weights[k])
    other = nnc.load(SPECS / "iris_mlp.nnspec", seed=1)
    assert not np.array_equal(m.weights["dense_1.weight"], other.weights["dense_1.weight"])
    assert "dense_1" in m.summary()


def test_load_with_settings_changes_the_architecture(tmp_path):
    spec = tmp_path / "iris.nnspec"
    spec.write_text("\n".join(l for l in (SPECS / "iris_mlp.nnspec").read_text().splitlines()
                              if "assert params" not in l))
    m = nnc.load(spec, hidden=8)
    assert m.weights["dense_1.weight"].shape == (8, 4)


def test_fit_predict_evaluate_on_arrays():
    ds = dataset("iris")
    m = nnc.load(SPECS / "iris_mlp.nnspec")
    hist = m.fit(ds.x, ds.y, epochs=60)
    assert len(hist) == 60 and hist is m.history
    assert list(hist[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    probs = m.predict(ds.x)
    assert probs.shape == (150, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert m.predict(ds.x[:1]).shape == (1, 3)
    assert m.predict(ds.x, batch_size=7).tobytes() == probs.tobytes()
    res = m.evaluate(ds.x, ds.y)
    assert set(res) == {"loss", "accuracy"}
    assert res["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == ds.y))
    assert res["accuracy"] >= 0.95


def test_fit_is_deterministic_and_equals_nnc_train(tmp_path, capsys):
    ds = dataset("iris")
    a, b = nnc.load(SPECS / "iris_mlp.nnspec"), nnc.load(SPECS / "iris_mlp.nnspec")
    ha, hb = a.fit(ds.x, ds.y, epochs=5), b.fit(ds.x, ds.y, epochs=5)
    for k in a.weights:
        assert a.weights[k].tobytes() == b.weights[k].tobytes()
    assert [dict(h, seconds=0) for h in ha] == [dict(h, seconds=0) for h in hb]
    assert main(["train", str(SPECS / "iris_mlp.nnspec"), "--out", str(tmp_path / "run"), "--set", "epochs=5",
                 "--quiet"]) == 0
    cli = npz(tmp_path / "run" / "weights.npz")
    for k in a.weights:
        assert cli[k].tobytes() == a.weights[k].tobytes(), f"Model.fit and nnc train differ at {k}"


def test_fit_with_settings_overrides():
    ds = dataset("iris")
    m = nnc.load(SPECS / "iris_mlp.nnspec")
    hist = m.fit(ds.x, ds.y, epochs=3, optimizer="sgd(lr=0.1, momentum=0.9)", validation=0, metrics=["accuracy", "mse"],
                 shuffle=False, batch_size=50)
    assert len(hist) == 3
    assert list(hist[0]) == ["epoch", "loss", "accuracy", "mse", "lr", "seconds"]
    assert hist[0]["lr"] == 0.1
    # the overrides were for this fit only: the next one uses the spec's settings again
    assert len(m.fit(ds.x, ds.y, epochs=1)) == 1
    with pytest.raises(nnc.NncError) as e:
        m.fit(ds.x, ds.y, epocs=3)
    assert e.value.diagnostics[0].code == "E307"


def test_fit_with_an_architecture_override_is_not_silently_ignored(tmp_path):
    spec = tmp_path / "iris.nnspec"
    spec.write_text("\n".join(l for l in (SPECS / "iris_mlp.nnspec").read_text().splitlines()
                              if "assert params" not in l))
    ds = dataset("iris")
    m = nnc.load(spec)
    try:
        m.fit(ds.x, ds.y, hidden=8, epochs=1)
    except nnc.NncError:
        return
    assert m.weights["dense_1.weight"].shape == (8, 4)


def test_fit_with_validation_data():
    ds = dataset("iris")
    rng = np.random.default_rng(0)
    idx = rng.permutation(150)
    tr, va = idx[:120], idx[120:]
    m = nnc.load(SPECS / "iris_mlp.nnspec")
    hist = m.fit(ds.x[tr], ds.y[tr], validation_data=(ds.x[va], ds.y[va]), epochs=50)
    assert "val_accuracy" in hist[-1]
    assert hist[-1]["val_loss"] == pytest.approx(m.evaluate(ds.x[va], ds.y[va])["loss"], rel=1e-6)
    assert hist[-1]["val_accuracy"] >= 0.9


def test_save_and_load_weights_round_trip(tmp_path):
    ds = dataset("iris")
    m = nnc.load(SPECS / "iris_mlp.nnspec")
    m.fit(ds.x, ds.y, epochs=5)
    m.save_weights(tmp_path / "w.npz")
    assert sorted(npz(tmp_path / "w.npz")) == sorted(m.weights)
    fresh = nnc.load(SPECS / "iris_mlp.nnspec")
    assert not np.array_equal(fresh.predict(ds.x), m.predict(ds.x))
    fresh.load_weights(tmp_path / "w.npz")
    assert fresh.predict(ds.x).tobytes() == m.predict(ds.x).tobytes()
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]           # no temp files left
    # the weights of another architecture are refused, naming the key
    cnn = nnc.load(SPECS / "digits_mlp.nnspec")
    with pytest.raises(nnc.NncError) as e:
        cnn.load_weights(tmp_path / "w.npz")
    codes = {d.code for d in e.value.diagnostics}
    assert codes & {"E751", "E752", "E753"}
    assert any("dense_1.weight" in d.message for d in e.value.diagnostics)


def test_predict_reshapes_and_validates_inputs():
    digits = dataset("digits")
    m = nnc.load(SPECS / "digits_mlp.nnspec")
    assert m.predict(digits.x[:4]).shape == (4, 10)                  # [1, 8, 8] -> [64]
    assert m.predict(digits.x[:4].reshape(4, 64)).shape == (4, 10)
    with pytest.raises(nnc.NncError) as e:
        m.predict(np.ones((3, 63)))
    assert e.value.diagnostics[0].code == "E731"


def test_sequence_models_take_token_ids_and_sequences():
    seq = nnc.load(SPECS / "sequence_classifier.nnspec")
    tokens = np.random.default_rng(0).integers(0, 20, (5, 12))
    assert seq.predict(tokens).shape == (5, 2)
    with pytest.raises(nnc.NncError):
        seq.predict(tokens + 0.5)                                      # token ids must be whole numbers
    sine = nnc.load(SPECS / "sine_lstm.nnspec")
    ds = dataset("sine")
    hist = sine.fit(ds.x, ds.y, epochs=2)
    assert list(hist[0])[:3] == ["epoch", "loss", "mae"]
    assert sine.predict(ds.x[:3]).shape == (3, 1)


def test_two_input_model_from_python():
    m = nnc.load(SPECS / "two_input_concat.nnspec")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 4)).astype(np.float32), rng.standard_normal((64, 3)).astype(np.float32)
    out = m.predict({"a": a, "b": b})
    assert out.shape == (64, 1) and np.all((out > 0) & (out < 1))
    with pytest.raises(nnc.NncError):
        m.predict(a)                                                   # two inputs need a dict
    with pytest.raises(nnc.NncError) as e:
        m.fit({"a": a, "b": b}, np.ones((64, 1)))                      # no train block
    assert e.value.diagnostics[0].code == "E608"
    y = ((a.sum(1) > b.sum(1)).astype(np.float32))[:, None]
    hist = m.fit({"a": a, "b": b}, y, loss="binary_cross_entropy", optimizer="adam(lr=0.05)", epochs=40,
                 batch_size=16)
    assert hist[-1]["accuracy"] >= 0.9
    with pytest.raises(nnc.NncError):
        m.evaluate({"a": a, "b": b}, y)                                # evaluate needs the train block


def test_export_writes_an_onnx_model(tmp_path):
    m = nnc.load(SPECS / "iris_mlp.nnspec")
    m.export(tmp_path / "iris.onnx")
    assert (tmp_path / "iris.onnx").stat().st_size > 0
