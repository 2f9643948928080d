"""`class_weight` against PyTorch's weighted losses (float64, loss and gradient, and one optimizer
step), `balanced` against scikit-learn's rule; `restore_best`: weights.npz and model.onnx hold the
epoch with the lowest val_loss, checkpoint.npz the last one, and resuming stays bit-exact."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

import nnc
from nnc.cli import main
from nnc.data import load_source, split_validation
from nnc.errors import NncError
from nnc.runtime.losses import class_weights, loss_and_grad
from nnc.runtime.train import Trainer

RNG = np.random.default_rng(5)


def _torch_loss_and_grad(fn, z):
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    loss = fn(zt)
    loss.backward()
    return loss.item(), zt.grad.numpy()


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_with_class_ids_equals_torch(smoothing):
    z = RNG.normal(0, 2, (13, 4))
    y = RNG.integers(0, 4, 13)
    w = np.array([0.5, 2.0, 1.0, 3.0])
    loss, grad = loss_and_grad("cross_entropy", {"label_smoothing": smoothing}, z, y, weight=list(w))
    ref = _torch_loss_and_grad(lambda t: F.cross_entropy(t, torch.tensor(y), weight=torch.tensor(w),
                                                         label_smoothing=smoothing), z)
    assert loss == pytest.approx(ref[0], rel=1e-12)
    np.testing.assert_allclose(grad, ref[1], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_with_probabilities_equals_torch(smoothing):
    z = RNG.normal(0, 1, (9, 3))
    t = RNG.dirichlet(np.ones(3), 9)
    w = np.array([1.0, 4.0, 0.25])
    loss, grad = loss_and_grad("cross_entropy", {"label_smoothing": smoothing}, z, t, weight=list(w))
    ref = _torch_loss_and_grad(lambda q: F.cross_entropy(q, torch.tensor(t), weight=torch.tensor(w),
                                                         label_smoothing=smoothing), z)
    assert loss == pytest.approx(ref[0], rel=1e-12)
    np.testing.assert_allclose(grad, ref[1], rtol=1e-10, atol=1e-14)


def test_cross_entropy_per_step_equals_torch():
    z = RNG.normal(0, 1, (5, 7, 3))          # (N, T, C): nnc's class axis is last, torch's is 1
    y = RNG.integers(0, 3, (5, 7))
    w = np.array([2.0, 1.0, 0.5])
    loss, grad = loss_and_grad("cross_entropy", {}, z, y, weight=list(w))
    ref = _torch_loss_and_grad(lambda t: F.cross_entropy(t.permute(0, 2, 1), torch.tensor(y),
                                                         weight=torch.tensor(w)), z)
    assert loss == pytest.approx(ref[0], rel=1e-12)
    np.testing.assert_allclose(grad, ref[1], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("shape", [(17, 1), (11, 3)])
def test_binary_cross_entropy_is_the_weighted_mean_of_torch(shape):
    """sum w_y * loss / sum w_y, with torch's elementwise BCE-with-logits losses."""
    z = RNG.normal(0, 2, shape)
    t = (RNG.random(shape) < 0.3).astype(np.float64)
    w = np.array([1.0, 5.0])
    loss, grad = loss_and_grad("binary_cross_entropy", {}, z, t, weight=list(w))
    we = torch.tensor(w[t.astype(np.int64)])
    ref = _torch_loss_and_grad(lambda q: F.binary_cross_entropy_with_logits(q, torch.tensor(t), weight=we,
                                                                            reduction="sum") / we.sum(), z)
    assert loss == pytest.approx(ref[0], rel=1e-12)
    np.testing.assert_allclose(grad, ref[1], rtol=1e-10, atol=1e-14)


def test_balanced_weights_are_sklearns():
    y = np.array([0] * 10 + [1] * 3 + [2] * 7)
    np.testing.assert_allclose(class_weights("balanced", "cross_entropy", y, (None, 3)),
                               compute_class_weight("balanced", classes=np.arange(3), y=y), rtol=1e-15)
    t = np.array([0, 1, 1, 0, 0, 0], dtype=np.float64)
    np.testing.assert_allclose(class_weights("balanced", "binary_cross_entropy", t, (None, 1)),
                               compute_class_weight("balanced", classes=np.array([0, 1]), y=t.astype(int)))
    with pytest.raises(NncError) as info:
        class_weights("balanced", "cross_entropy", np.array([0, 0, 2]), (None, 3))
    assert info.value.diagnostics[0].code == "E717" and "class 1" in info.value.diagnostics[0].message


SPEC = """
model flowers {{
    input features: [4]
    dense(6) -> tanh
    dense(3) -> softmax
}}

train {{
    data = dataset("iris")
    validation = {validation}
    loss = cross_entropy(label_smoothing=0.1)
    optimizer = {optimizer}
    epochs = {epochs}
    batch_size = {batch}
    shuffle = false
    dtype = float64
    class_weight = {weights}
    restore_best = {restore}
}}
"""


def _spec(tmp_path, name="flowers.nnspec", **kw):
    values = dict(validation=0.3, optimizer="sgd(lr=0.5, momentum=0.9)", epochs=3, batch=150, weights="[1, 2, 4]",
                  restore="false")
    values.update(kw)
    path = tmp_path / name
    path.write_text(SPEC.format(**values))
    return path


def test_one_sgd_step_with_class_weights_equals_torch(tmp_path):
    spec = _spec(tmp_path, validation=0, epochs=1)
    model = nnc.load(spec)
    w0 = {k: v.copy() for k, v in model.weights.items()}
    ds = load_source("dataset", {"name": "iris"}, ".", float_dtype=np.float64)
    model.fit(ds.x, ds.y)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    with torch.no_grad():
        for i, layer in ((0, "dense_1"), (2, "dense_2")):
            net[i].weight.copy_(torch.tensor(w0[f"{layer}.weight"]))
            net[i].bias.copy_(torch.tensor(w0[f"{layer}.bias"]))
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    loss = F.cross_entropy(net(torch.tensor(ds.x)), torch.tensor(ds.y), weight=torch.tensor([1.0, 2.0, 4.0],
                           dtype=torch.float64), label_smoothing=0.1)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert model.history[0]["loss"] == pytest.approx(loss.item(), rel=1e-12)
    for i, layer in ((0, "dense_1"), (2, "dense_2")):
        np.testing.assert_allclose(model.weights[f"{layer}.weight"], net[i].weight.detach().numpy(), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(model.weights[f"{layer}.bias"], net[i].bias.detach().numpy(), rtol=1e-9,
                                   atol=1e-12)


def test_balanced_weights_come_from_the_training_split_and_weight_only_the_training_loss(tmp_path):
    spec = _spec(tmp_path, weights="balanced")
    model = nnc.load(spec)
    ds = load_source("dataset", {"name": "iris"}, ".", float_dtype=np.float64)
    train, val = split_validation(ds, 0.3, 0)
    trainer = Trainer(model.graph, model.program.train, {"features": train.x}, train.y, {"features": val.x}, val.y)
    trainer.new_state(model.weights)
    np.testing.assert_allclose(trainer.class_weights, compute_class_weight("balanced", classes=np.arange(3),
                                                                            y=train.y))
    # validation (and evaluation) losses are unweighted: Keras's rule
    loss, _ = trainer.evaluate(model.weights, {"features": val.x}, val.y)
    out = model.graph.forward({"features": val.x}, model.weights, keep=True)[1][0]["dense_2"]
    ref = F.cross_entropy(torch.tensor(out), torch.tensor(val.y), label_smoothing=0.1).item()
    assert loss == pytest.approx(ref, rel=1e-12)


# ----------------------------------------------------------------------------------------------
# restore_best

def _history(run):
    return list(csv.DictReader(io.StringIO((run / "history.csv").read_text())))


def _val_loss(spec, weights_file):
    model = nnc.load(spec)
    model.load_weights(weights_file)
    ds = load_source("dataset", {"name": "iris"}, ".", float_dtype=np.float64)
    _, val = split_validation(ds, 0.3, 0)
    return model.evaluate(val.x, val.y)["loss"], model, val


def test_restore_best_keeps_the_epoch_with_the_lowest_val_loss(tmp_path, capsys):
    import onnxruntime as ort

    # a learning rate that overshoots: the validation loss goes down and up again
    spec = _spec(tmp_path, optimizer="sgd(lr=2.0, momentum=0.9)", epochs=12, batch=30, restore="true",
                 weights="[1, 1, 1]")
    run = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(run), "--quiet"]) == 0
    rows = _history(run)
    losses = [float(r["val_loss"]) for r in rows]
    best = int(np.argmin(losses))
    assert best < len(rows) - 1 and losses[-1] > losses[best] + 1e-3, "the run must get worse after its best"
    got, model, val = _val_loss(spec, run / "weights.npz")
    assert got == pytest.approx(losses[best], rel=1e-9)
    assert "weights of epoch" in capsys.readouterr().out
    # the checkpoint holds the last epoch, for --resume
    from nnc.runtime.weights import read_npz
    ckpt = read_npz(run / "checkpoint.npz", "checkpoint")
    last = {k[len("weights/"):]: v for k, v in ckpt.items() if k.startswith("weights/")}
    np.savez(tmp_path / "last.npz", **last)
    assert _val_loss(spec, tmp_path / "last.npz")[0] == pytest.approx(losses[-1], rel=1e-9)
    # model.onnx holds the best weights
    sess = ort.InferenceSession(str(run / "model.onnx"))
    onnx_out = sess.run(None, {"features": val.x.astype(np.float32)})[0]
    np.testing.assert_allclose(onnx_out, model.predict(val.x), atol=1e-5)


def test_resume_with_restore_best_is_bit_exact(tmp_path):
    spec = _spec(tmp_path, optimizer="sgd(lr=2.0, momentum=0.9)", epochs=8, batch=30, restore="true",
                 weights="balanced")
    assert main(["train", str(spec), "--out", str(tmp_path / "straight"), "--quiet"]) == 0
    assert main(["train", str(spec), "--out", str(tmp_path / "split"), "--quiet", "--set", "epochs=3"]) == 0
    assert main(["train", str(spec), "--resume", str(tmp_path / "split"), "--quiet"]) == 0
    for name in ("weights.npz", "checkpoint.npz"):
        a, b = np.load(tmp_path / "straight" / name), np.load(tmp_path / "split" / name)
        assert sorted(a.files) == sorted(b.files), name
        for k in a.files:
            if k != "meta":
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name} {k}")
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in _history(tmp_path / "straight")]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in _history(tmp_path / "split")]
