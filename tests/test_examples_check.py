"""The example specs in specs/: each compiles with no diagnostics, starts with a comment saying what
it shows, and has the documented facts (parameters, FLOPs, output shape, layer names, train keys).

The numbers are worked out by hand in the comments (dense: F*units + units parameters and
2*F*units FLOPs; see tests/test_shapes.py for the rules).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from nnc.compiler.lower import compile_source

SPECS = Path(__file__).resolve().parent.parent / "specs"
ALL = sorted(SPECS.glob("*.nnspec"))

# name -> (params, flops, output shape, layers with weights in order, train facts or None)
FACTS = {
    "digits_cnn": (
        # conv 16*1*9 + 16 = 160; conv 32*16*9 + 32 = 4,640; dense 512*64 + 64 = 32,832;
        # dense 64*10 + 10 = 650 -> 38,282
        38_282,
        # 2*(16*8*8)*1*9 = 18,432; 2*(32*4*4)*16*9 = 147,456; 2*512*64 = 65,536; 2*64*10 = 1,280
        232_704, [10], ["conv2d_1", "conv2d_2", "dense_1", "dense_2"],
        {"data": "digits", "loss": "cross_entropy", "epochs": 15, "batch_size": 32}),
    "perceptron_and": (
        3,                                                   # 2*1 + 1
        4,                                                   # 2*2*1
        [1], ["dense_1"],
        {"data": "and", "loss": "mse", "optimizer": ("sgd", 0.1), "metrics": ["accuracy"],
         "batch_size": 1}),
    "xor_mlp": (
        33,                                                  # (2*8 + 8) + (8*1 + 1)
        48,                                                  # 2*2*8 + 2*8*1
        [1], ["dense_1", "dense_2"],
        {"data": "xor", "loss": "binary_cross_entropy", "optimizer": ("adam", 0.05),
         "batch_size": 4}),
    "iris_mlp": (
        131,                                                 # (4*16 + 16) + (16*3 + 3)
        224,                                                 # 2*4*16 + 2*16*3
        [3], ["dense_1", "dense_2"],
        {"data": "iris", "loss": "cross_entropy", "validation": 0.2}),
    "digits_mlp": (
        17_226,                                              # 8,320 + 8,256 + 650
        34_048,                                              # 2*(64*128 + 128*64 + 64*10)
        [10], ["dense_1", "dense_2", "dense_3"],
        {"data": "digits", "loss": "cross_entropy", "validation": 0.2}),
    "sine_lstm": (
        4_513,                                               # 4*(32*1 + 32*32 + 2*32) + 32 + 1
        169_024,                                             # 2*20*4*32*(1 + 32) + 2*32*1
        [1], ["lstm_1", "dense_1"],
        {"data": "sine", "loss": "mse", "metrics": ["mae"]}),
    "sequence_classifier": (
        5_186,                                               # 20*16 + 3*(32*16 + 32*32 + 64) + 66
        110_720,                                             # 2*12*3*32*(16 + 32) + 2*32*2
        [2], ["embedding_1", "gru_1", "dense_1"],
        {"data": "npz", "loss": "cross_entropy", "validation": 0.2}),
    "residual_mlp": (
        25_347,                                              # 192 + 6*(64*64 + 64) + 195
        49_792,                                              # 2*2*64 + 6*2*64*64 + 2*64*3
        [3], ["dense_1"] + [f"residual_{u}.dense_{k}" for u in (1, 2, 3) for k in (1, 2)] + ["dense_2"],
        {"data": "spirals", "loss": "cross_entropy", "validation": 0.2}),
    "resnet_small": (
        # stem 216 + 16; basic(8) 2*576 + 32; stage2 1,152 + 2,304 + 128 + 96 + 2*2,304 + 64;
        # stage3 4,608 + 9,216 + 512 + 192 + 2*9,216 + 128; dense 32*4 + 4 -> 42,988
        42_988,
        # convolutions 2 * out * C * 9 (or * 1): 442,368 + 2,359,296 + 2 * 4,194,304, dense 256
        11_190_528, [4],
        ["conv2d_1", "batchnorm_1", "basic_1.conv2d_1", "basic_1.batchnorm_1", "basic_1.conv2d_2",
         "basic_1.batchnorm_2"]
        + [f"{s}.{u}" for s in ("stage2", "stage3") for u in (
            "down_1.conv2d_1", "down_1.batchnorm_1", "down_1.conv2d_2", "down_1.batchnorm_2", "down_1.conv2d_3",
            "down_1.batchnorm_3", "basic_1.conv2d_1", "basic_1.batchnorm_1", "basic_1.conv2d_2",
            "basic_1.batchnorm_2")] + ["dense_1"],
        {"data": "npz", "loss": "cross_entropy", "validation": 0.2, "epochs": 5}),
    "breast_cancer_mlp": (
        513,                                                 # (30*16 + 16) + (16*1 + 1); normalize has state only
        992,                                                 # 2*30*16 + 2*16*1 (normalize counts 0)
        [1], ["normalize_1", "dense_1", "dense_2"],
        {"data": "csv", "loss": "binary_cross_entropy", "validation": 0.2, "epochs": 30,
         "metrics": ["accuracy", "f1", "auc"]}),
    "review_sentiment": (
        6_914,                                               # 128*16 + 3*(32*16 + 32*32 + 64) + 66
        221_312,                                             # 2*24*3*32*(16 + 32) + 2*32*2
        [2], ["embedding_1", "gru_1", "dense_1"],
        {"data": "csv", "loss": "cross_entropy", "epochs": 20, "metrics": ["accuracy", "f1"]}),
    "glyphs_cnn": (
        9_604,                                               # 80 + 1,168 + (256*32 + 32) + (32*4 + 4)
        # 2*(8*16*16)*1*9 = 36,864; 2*(16*8*8)*8*9 = 147,456; 2*256*32 = 16,384; 2*32*4 = 256
        200_960, [4], ["conv2d_1", "conv2d_2", "dense_1", "dense_2"],
        {"data": "images", "loss": "cross_entropy", "validation": 0.2, "epochs": 15}),
    "two_input_concat": (
        89,                                                  # (4*8 + 8) + (3*8 + 8) + (16 + 1)
        144,                                                 # 2*4*8 + 2*3*8 + 2*16*1
        [1], ["dense_1", "dense_2", "dense_3"],
        None),                                               # for export only
}


# batchnorm running statistics: 2 per channel of each batchnorm (8 * 3 + 16 * 5 + 32 * 5 = 264 channels)
STATE = {"resnet_small": 528, "breast_cancer_mlp": 60}   # normalize: mean and var of each of 30 columns


def _compile(path: Path):
    return compile_source(path.read_text(encoding="utf-8"), str(path))


def test_every_example_is_documented_here():
    assert sorted(p.stem for p in ALL) == sorted(FACTS)


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_compiles_without_diagnostics(path):
    program = _compile(path)  # raises NncError with the diagnostics otherwise
    assert program.warnings == []  # nor any warning
    assert program.model.name == path.stem
    assert all(a.actual is not None for a in program.model.assertions)


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_layout(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# "), "starts with a comment saying what it shows"
    for i, line in enumerate(lines, 1):
        assert len(line) <= 100, f"line {i} is longer than 100 columns"
        assert "\t" not in line, f"line {i} has a tab"
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 4 == 0, f"line {i} is not indented by a multiple of 4 spaces"


@pytest.mark.parametrize("name", sorted(FACTS))
def test_facts(name):
    params, flops, output, layers, train = FACTS[name]
    program = _compile(SPECS / f"{name}.nnspec")
    model = program.model
    assert (model.params, model.flops, model.state) == (params, flops, STATE.get(name, 0))
    assert [o.shape for o in model.outputs] == [output]
    assert [n.id for n in model.nodes if n.weights] == layers
    if train is None:
        assert program.train is None
        return
    t = program.train
    assert t is not None
    if t.data.kind == "dataset":
        assert t.data.args["name"] == train["data"]
    else:
        assert t.data.kind == train["data"]
    assert t.loss["kind"] == train["loss"]
    if "optimizer" in train:
        assert (t.optimizer["kind"], t.optimizer["lr"]) == train["optimizer"]
    for key in ("metrics", "batch_size", "epochs", "validation"):
        if key in train:
            assert getattr(t, key) == train[key], key


def test_digits_cnn_is_the_contract_example():
    text = (SPECS / "digits_cnn.nnspec").read_text(encoding="utf-8")
    model = compile_source(text, "digits_cnn.nnspec").model
    assert [n.op for n in model.nodes] == [
        "conv2d", "relu", "maxpool2d", "conv2d", "relu", "flatten", "dense", "relu", "dropout",
        "dense", "softmax"]
    assert [n.shape for n in model.nodes if n.weights] == [[16, 8, 8], [32, 4, 4], [64], [10]]


def test_two_input_model_names_its_output():
    model = _compile(SPECS / "two_input_concat.nnspec").model
    assert [(i.name, i.shape) for i in model.inputs] == [("a", [4]), ("b", [3])]
    assert [o.name for o in model.outputs] == ["score"]
    assert model.node("concat_1").inputs == ["relu_1", "relu_2"]


def test_residual_blocks_are_chained():
    model = _compile(SPECS / "residual_mlp.nnspec").model
    # use k: dense_1 -> relu_1 -> dense_2, add(relu_1, dense_2) -> relu_2, all prefixed residual_k.
    adds = [n for n in model.nodes if n.op == "add"]
    assert [a.inputs for a in adds] == [[f"residual_{k}.relu_1", f"residual_{k}.dense_2"] for k in (1, 2, 3)]
    assert model.node("residual_2.dense_1").inputs == ["residual_1.relu_2"]  # the relu after add_1
    assert model.node("residual_1.dense_1").inputs == ["relu_1"]             # the stem's relu
    assert [(b.id, b.block, b.args) for b in model.blocks] == [(f"residual_{k}", "residual", {"units": "64"})
                                                             for k in (1, 2, 3)]
    assert {n.block for n in model.nodes} == {None, "residual_1", "residual_2", "residual_3"}


def test_token_data_is_reproducible():
    """specs/data/tokens.npz is exactly what specs/data/make_tokens.py generates."""
    script = SPECS / "data" / "make_tokens.py"
    spec = importlib.util.spec_from_file_location("make_tokens", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x, y = module.make()
    with np.load(SPECS / "data" / "tokens.npz", allow_pickle=False) as saved:
        assert sorted(saved.files) == ["x", "y"]
        assert saved["x"].dtype == np.int64 and saved["y"].dtype == np.int64
        np.testing.assert_array_equal(saved["x"], x)
        np.testing.assert_array_equal(saved["y"], y)
    assert x.shape == (2000, 12) and x.min() >= 0 and x.max() < 20
    assert (SPECS / "data" / "tokens.npz").stat().st_size < 200_000


def test_the_text_example_fits_its_source():
    """review_sentiment's text column and its model agree (nnc check says so statically, E605/E609),
    and the shipped CSVs are exactly what specs/data/make_reviews.py writes."""
    program = _compile(SPECS / "review_sentiment.nnspec")
    data = program.train.data
    assert (data.kind, data.args["text"], data.args["vocab"], data.args["length"]) == ("csv", "review", 128, 24)
    assert program.train.validation.kind == "csv" and program.train.restore_best is True
    (inp,) = program.model.inputs
    assert (inp.dtype, inp.shape) == ("int64", [24])
    assert program.model.node("embedding_1").attrs["vocab"] == 128
    spec = importlib.util.spec_from_file_location("make_reviews", SPECS / "data" / "make_reviews.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, (n, seed) in module.FILES.items():
        assert (SPECS / "data" / name).read_text(encoding="utf-8") == module.make(n, seed), name


def test_the_breast_cancer_csv_is_scikit_learns():
    """specs/data/breast_cancer.csv holds scikit-learn's copy of the UCI data, value for value."""
    import csv as _csv

    from sklearn.datasets import load_breast_cancer
    ref = load_breast_cancer()
    with (SPECS / "data" / "breast_cancer.csv").open(newline="") as fh:
        rows = list(_csv.reader(fh))
    assert rows[0] == [n.replace(" ", "_") for n in ref.feature_names] + ["diagnosis"]
    x = np.array([[float(v) for v in r[:-1]] for r in rows[1:]])
    np.testing.assert_array_equal(x, ref.data)
    assert [r[-1] for r in rows[1:]] == [ref.target_names[t] for t in ref.target]
