"""Metrics against scikit-learn (computed here, on the same predictions): precision, recall, f1, auc
and r2 are scikit-learn's definitions -- binary for one sigmoid output, macro otherwise -- and are
computed over the whole epoch, never as averages of per-batch values. Also the confusion matrix of
`nnc evaluate`, and a training run whose history equals scikit-learn on the epoch's predictions."""
from __future__ import annotations

import csv
import io
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from nnc.cli import main
from nnc.runtime.metrics import MetricSet, binary_auc, confusion_matrix, metric

RNG = np.random.default_rng(12)
CLASS_METRICS = ["accuracy", "precision", "recall", "f1", "auc"]


def sk(name, y_true, y_pred, scores, average):
    """scikit-learn's value of a metric (``zero_division=0`` as nnc)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "accuracy":
            return skm.accuracy_score(y_true, y_pred)
        if name == "auc":
            if average == "binary":
                return skm.roc_auc_score(y_true, scores)
            return skm.roc_auc_score(y_true, scores, average="macro", **({"multi_class": "ovr"} if y_true.ndim == 1 else {}))
        fn = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[name]
        return fn(y_true, y_pred, average=average, zero_division=0)


def batched(names, out, y, loss, batch):
    m = MetricSet(names, loss)
    for s in range(0, len(out), batch):
        m.update(out[s:s + batch], y[s:s + batch])
    return m.result()


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("batch", [7, 1000])
def test_binary_metrics_of_one_sigmoid_output_equal_sklearn(batch):
    n = 301
    y = (RNG.random(n) < 0.35).astype(np.int64)
    p = 1 / (1 + np.exp(-(1.5 * (2 * y - 1) + RNG.normal(0, 1.5, n))))
    p[:40] = np.round(p[:40], 1)                      # ties among the scores
    out = p[:, None].astype(np.float32)
    got = batched(CLASS_METRICS, out, y, "binary_cross_entropy", batch)
    scores = out[:, 0].astype(np.float64)
    for name in CLASS_METRICS:
        assert got[name] == pytest.approx(sk(name, y, (scores > 0.5).astype(int), scores, "binary"), abs=1e-12), name


@pytest.mark.parametrize("batch", [16, 1000])
def test_multiclass_metrics_are_macro_and_equal_sklearn(batch):
    n, k = 257, 4
    y = RNG.integers(0, k, n)
    out = softmax(RNG.normal(0, 1, (n, k)) + 2.0 * np.eye(k)[y])
    got = batched(CLASS_METRICS, out, y, "cross_entropy", batch)
    pred = out.argmax(1)
    for name in CLASS_METRICS:
        assert got[name] == pytest.approx(sk(name, y, pred, out, "macro"), abs=1e-12), name


def test_macro_averages_over_the_classes_in_targets_or_predictions():
    """scikit-learn's default labels: a class that is neither a target nor a prediction is not in
    the mean (class 3 of 4 here), one that is only predicted counts with precision 0."""
    y = np.array([0, 0, 1, 1, 2, 2, 0])
    pred = np.array([0, 1, 1, 1, 2, 0, 0])
    out = np.eye(4)[pred] * 0.9 + 0.025
    for name in ("precision", "recall", "f1"):
        assert metric(name, out, y, "cross_entropy") == pytest.approx(sk(name, y, pred, None, "macro"))
    pred2 = np.array([0, 1, 1, 1, 2, 3, 0])           # class 3 only predicted
    out2 = np.eye(4)[pred2] * 0.9 + 0.025
    for name in ("precision", "recall", "f1"):
        assert metric(name, out2, y, "cross_entropy") == pytest.approx(sk(name, y, pred2, None, "macro"))


def test_multilabel_metrics_are_macro_over_the_units():
    n, k = 120, 3
    y = (RNG.random((n, k)) < 0.4).astype(np.float64)
    out = 1 / (1 + np.exp(-(2 * (2 * y - 1) + RNG.normal(0, 2, (n, k)))))
    got = batched(CLASS_METRICS, out, y, "binary_cross_entropy", 25)
    pred = (out > 0.5).astype(int)
    assert got["accuracy"] == pytest.approx((pred == y).mean())  # elementwise, as before
    for name in ("precision", "recall", "f1", "auc"):
        assert got[name] == pytest.approx(sk(name, y.astype(int), pred, out, "macro"), abs=1e-12), name


def test_probability_targets_use_their_argmax():
    n, k = 90, 3
    ids = RNG.integers(0, k, n)
    y = np.eye(k)[ids] * 0.8 + 0.2 / k
    out = softmax(RNG.normal(0, 1, (n, k)) + np.eye(k)[ids])
    for name in CLASS_METRICS:
        assert metric(name, out, y, "cross_entropy") == pytest.approx(sk(name, ids, out.argmax(1), out, "macro"))


def test_per_step_outputs_count_every_position():
    y = RNG.integers(0, 3, (40, 5))
    out = softmax(RNG.normal(0, 1, (40, 5, 3)) + np.eye(3)[y])
    flat_y, flat_out = y.reshape(-1), out.reshape(-1, 3)
    for name in CLASS_METRICS:
        assert metric(name, out, y, "cross_entropy") == pytest.approx(
            sk(name, flat_y, flat_out.argmax(1), flat_out, "macro")), name


def test_r2_equals_sklearn_over_the_whole_epoch():
    n = 203
    y = RNG.normal(5.0, 3.0, (n, 2))
    out = y + RNG.normal(0, 1.0, (n, 2))
    y[:, 1] += 1e6                                   # a large mean: no cancellation in the running sums
    out[:, 1] += 1e6
    got = batched(["r2", "mse", "mae"], out, y, "mse", 10)
    assert got["r2"] == pytest.approx(skm.r2_score(y, out), rel=1e-9)
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, out), rel=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, out), rel=1e-12)
    # a constant target: 1 when predicted exactly, else 0 (scikit-learn's force_finite)
    const = np.ones((5, 1))
    assert metric("r2", const, const, "mse") == skm.r2_score(const, const) == 1.0
    assert metric("r2", const + 0.1, const, "mse") == skm.r2_score(const, const + 0.1) == 0.0


def test_whole_epoch_values_are_not_averages_of_batches():
    """f1 and auc over an epoch differ from the mean of per-batch values; nnc gives the former."""
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    p = np.array([0.9, 0.6, 0.2, 0.1, 0.4, 0.8, 0.7, 0.3])[:, None]
    whole = {n: sk(n, y, (p[:, 0] > 0.5).astype(int), p[:, 0], "binary") for n in ("f1", "auc")}
    per_batch = np.mean([sk("f1", y[s:s + 4], (p[s:s + 4, 0] > 0.5).astype(int), None, "binary") for s in (0, 4)])
    got = batched(["f1", "auc"], p, y, "binary_cross_entropy", 4)
    assert got == pytest.approx(whole)
    assert got["f1"] != pytest.approx(per_batch)


def test_auc_edge_cases():
    assert np.isnan(binary_auc(np.array([0.1, 0.9]), np.array([True, True])))   # one class: undefined
    # a multi-class set missing a class: that class is left out of the one-vs-rest mean
    y = np.array([0, 0, 1, 1])
    out = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1]])
    expected = np.mean([skm.roc_auc_score(y == 0, out[:, 0]), skm.roc_auc_score(y == 1, out[:, 1])])
    assert metric("auc", out, y, "cross_entropy") == pytest.approx(expected)


def test_confusion_matrix_equals_sklearn():
    y = RNG.integers(0, 3, 50)
    out = softmax(RNG.normal(0, 1, (50, 3)) + np.eye(3)[y])
    np.testing.assert_array_equal(confusion_matrix(out, y, "cross_entropy"),
                                  skm.confusion_matrix(y, out.argmax(1), labels=[0, 1, 2]))
    yb = RNG.integers(0, 2, 30)
    pb = RNG.random((30, 1))
    np.testing.assert_array_equal(confusion_matrix(pb, yb, "binary_cross_entropy"),
                                  skm.confusion_matrix(yb, (pb[:, 0] > 0.5).astype(int), labels=[0, 1]))


SPEC = """
model flowers {
    input features: [4]
    dense(8) -> relu
    dense(3) -> softmax
}

train {
    data = dataset("iris")
    validation = 0.3
    loss = cross_entropy
    optimizer = adam(lr=0.02)
    epochs = 4
    batch_size = 16
    metrics = [accuracy, precision, recall, f1, auc]
}
"""


def test_a_run_records_sklearn_metrics_and_evaluate_prints_them(tmp_path, capsys):
    import nnc
    from nnc.data import load_source, split_validation

    spec = tmp_path / "flowers.nnspec"
    spec.write_text(SPEC)
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    capsys.readouterr()
    last = list(csv.DictReader(io.StringIO((tmp_path / "run" / "history.csv").read_text())))[-1]
    model = nnc.load(spec)
    model.load_weights(tmp_path / "run" / "weights.npz")
    _, val = split_validation(load_source("dataset", {"name": "iris"}, "."), 0.3, 0)
    out = model.predict(val.x)
    for name in CLASS_METRICS:                            # validation metrics: one pass, the epoch's weights
        assert float(last[f"val_{name}"]) == pytest.approx(sk(name, val.y, out.argmax(1), out, "macro"),
                                                           abs=1e-6), name
    assert main(["evaluate", str(spec), "--weights", str(tmp_path / "run" / "weights.npz")]) == 0
    text = capsys.readouterr().out
    full = load_source("dataset", {"name": "iris"}, ".")
    out = model.predict(full.x)
    for name in CLASS_METRICS:
        shown = float(text.split(f" {name} ")[1].split(",")[0].split()[0])
        assert shown == pytest.approx(sk(name, full.y, out.argmax(1), out, "macro"), abs=5e-5), name
    matrix = skm.confusion_matrix(full.y, out.argmax(1))
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("confusion matrix"))
    assert lines[start + 1].split() == ["setosa", "versicolor", "virginica"]        # the label names
    for row, (label, counts) in enumerate(zip(["setosa", "versicolor", "virginica"], matrix)):
        assert lines[start + 2 + row].split() == [label, *map(str, counts)]


def test_training_metrics_are_over_the_epochs_batches(tmp_path):
    """The training columns: every batch's output (at that moment's weights) fed to one epoch-wide
    computation, which equals scikit-learn on the concatenated outputs."""
    import nnc
    from nnc.data import load_source
    from nnc.runtime.train import Trainer

    spec = tmp_path / "flowers.nnspec"
    spec.write_text(SPEC.replace("validation = 0.3", "validation = 0"))
    model = nnc.load(spec)
    ds = load_source("dataset", {"name": "iris"}, ".")
    trainer = Trainer(model.graph, model.program.train, {"features": ds.x}, ds.y)
    state = trainer.new_state(model.weights)
    seen = []
    step = trainer.train_step

    def recording(*args):
        loss, out, yb = step(*args)
        seen.append((out.copy(), yb.copy()))
        return loss, out, yb
    trainer.train_step = recording
    log = trainer.train_epoch(state)
    out = np.concatenate([o for o, _ in seen])
    y = np.concatenate([t for _, t in seen])
    assert len(seen) == 10                                # 150 rows in batches of 16
    for name in CLASS_METRICS:
        assert log.metrics[name] == pytest.approx(sk(name, y, out.argmax(1), out, "macro"), abs=1e-12), name
