"""Blocks: expansion (the same network as the layers written out by hand), nested layer names
(exactly the language reference's), weights files and ONNX export with nested names, scoping,
value arguments (skip connections), published counts of a known model, and the diagnostics of a
body used several times (reported once, with a note naming the use)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import nnc
from nnc.compiler.lower import check_source, compile_source
from nnc.errors import NncError

ROOT = Path(__file__).resolve().parent.parent


def model_of(source: str):
    return compile_source(source, "spec.nnspec").model


def errors_of(source: str) -> list:
    with pytest.raises(NncError) as info:
        check_source(source, "spec.nnspec")
    return [d for d in info.value.diagnostics if d.severity == "error"]


# ----------------------------------------------------------------------------------------------
# expansion: a block used twice is the same network as its layers written out by hand

WITH_BLOCK = """
block basic(c, stride = 1) {
    x = identity
    main = conv2d(c, 3, stride=stride, padding=1, bias=false) -> batchnorm -> relu
        -> conv2d(c, 3, padding=1, bias=false) -> batchnorm
    skip = x -> conv2d(c, 1, stride=stride, bias=false) -> batchnorm
    add(main, skip) -> relu
}

model net {
    input image: [3, 16, 16]
    conv2d(8, 3, padding=1) -> relu
    basic(8)
    basic(16, stride=2, name="stage2")
    globalavgpool2d -> dense(10) -> softmax
}
"""

BY_HAND = """
model net {
    input image: [3, 16, 16]
    conv2d(8, 3, padding=1) -> relu
    x1 = identity
    main1 = conv2d(8, 3, stride=1, padding=1, bias=false) -> batchnorm -> relu
        -> conv2d(8, 3, padding=1, bias=false) -> batchnorm
    skip1 = x1 -> conv2d(8, 1, stride=1, bias=false) -> batchnorm
    add(main1, skip1) -> relu
    x2 = identity
    main2 = conv2d(16, 3, stride=2, padding=1, bias=false) -> batchnorm -> relu
        -> conv2d(16, 3, padding=1, bias=false) -> batchnorm
    skip2 = x2 -> conv2d(16, 1, stride=2, bias=false) -> batchnorm
    add(main2, skip2) -> relu
    globalavgpool2d -> dense(10) -> softmax
}
"""


def _structure(model):
    """The network without its names: each node's op, attributes, input positions, shape, weights."""
    index = {i.name: f"input{k}" for k, i in enumerate(model.inputs)}
    for k, n in enumerate(model.nodes):
        index[n.id] = k
    return [(n.op, n.attrs, [index[i] for i in n.inputs], n.shape, n.params, n.flops,
             [(w.name, w.shape, w.trainable) for w in n.weights]) for n in model.nodes]


def test_a_block_used_twice_is_the_network_written_out_by_hand():
    a, b = model_of(WITH_BLOCK), model_of(BY_HAND)
    assert _structure(a) == _structure(b)
    assert (a.params, a.state, a.flops) == (b.params, b.state, b.flops)
    assert [o.shape for o in a.outputs] == [o.shape for o in b.outputs] == [[10]]


def test_nested_names_are_the_contracts():
    m = model_of(WITH_BLOCK)
    ids = [n.id for n in m.nodes]
    assert ids == [
        "conv2d_1", "relu_1",
        "basic_1.identity_1", "basic_1.conv2d_1", "basic_1.batchnorm_1", "basic_1.relu_1",
        "basic_1.conv2d_2", "basic_1.batchnorm_2", "basic_1.conv2d_3", "basic_1.batchnorm_3",
        "basic_1.add_1", "basic_1.relu_2",
        "stage2.identity_1", "stage2.conv2d_1", "stage2.batchnorm_1", "stage2.relu_1",
        "stage2.conv2d_2", "stage2.batchnorm_2", "stage2.conv2d_3", "stage2.batchnorm_3",
        "stage2.add_1", "stage2.relu_2",
        "globalavgpool2d_1", "dense_1", "softmax_1"]
    # the merge reads the body's own values; the shortcut reads the use's input
    assert m.node("stage2.add_1").inputs == ["stage2.batchnorm_2", "stage2.batchnorm_3"]
    assert m.node("stage2.identity_1").inputs == ["basic_1.relu_2"]
    assert m.node("stage2.conv2d_3").inputs == ["stage2.identity_1"]
    # every node knows its use; the uses are listed with their arguments
    assert m.node("stage2.conv2d_1").block == "stage2" and m.node("dense_1").block is None
    assert [(u.id, u.block, u.args, u.parent) for u in m.blocks] == [
        ("basic_1", "basic", {"c": "8", "stride": "1"}, None),
        ("stage2", "basic", {"c": "16", "stride": "2"}, None)]


def test_layers_inside_a_use_do_not_advance_the_enclosing_counters():
    m = model_of("""
block unit(n) { dense(n) -> relu }
model m {
    input x: [4]
    unit(5)
    dense(3)
    unit(2)
    unit(2, name="last")
    dense(1)
}""")
    assert [n.id for n in m.nodes] == ["unit_1.dense_1", "unit_1.relu_1", "dense_1", "unit_2.dense_1",
                                       "unit_2.relu_1", "last.dense_1", "last.relu_1", "dense_2"]


def test_nested_uses_and_repeat_inside_a_block():
    m = model_of("""
block unit(n) { dense(n) -> relu }
block stage(n, depth = 2) {
    repeat depth { unit(n) }
    dense(n, name="proj")
}
model m {
    input x: [4]
    stage(8)
    stage(4, depth=1, name="s2")
}""")
    assert [n.id for n in m.nodes] == [
        "stage_1.unit_1.dense_1", "stage_1.unit_1.relu_1", "stage_1.unit_2.dense_1", "stage_1.unit_2.relu_1",
        "stage_1.proj", "s2.unit_1.dense_1", "s2.unit_1.relu_1", "s2.proj"]
    assert [(u.id, u.parent) for u in m.blocks] == [
        ("stage_1", None), ("stage_1.unit_1", "stage_1"), ("stage_1.unit_2", "stage_1"),
        ("s2", None), ("s2.unit_1", "s2")]
    assert m.node("stage_1.unit_2.dense_1").block == "stage_1.unit_2"


def test_a_body_has_its_own_scope():
    """`x` in the body is not the model's `x`; names bound in a body are local to each use; the
    body sees the top-level constants but not the model's."""
    m = model_of("""
let width = 6
block unit() {
    x = dense(width)
    h = x -> relu
    add(x, h)
}
model m {
    input x: [4]
    let width = 100
    unit
    unit
    x -> dense(2)
}""")
    assert m.node("unit_1.dense_1").shape == [6]        # the top-level width, not the model's
    assert m.node("dense_1").inputs == ["x"]            # the model's x after the uses
    assert m.node("unit_2.dense_1").inputs == ["unit_1.add_1"]


def test_a_value_argument_passes_the_callers_value():
    """An encoder-decoder skip connection: the decoder merges the encoder's value."""
    m = model_of("""
block up(units, skip) {
    h = dense(units) -> relu
    concat(h, skip) -> dense(units)
}
model m {
    input x: [16]
    e1 = dense(8) -> relu
    z = dense(4)
    up(8, e1)
    up(16, skip=x)
}""")
    assert m.node("up_1.concat_1").inputs == ["up_1.relu_1", "relu_1"]
    assert m.node("up_1.concat_1").shape == [16]
    assert m.node("up_2.concat_1").inputs == ["up_2.relu_1", "x"]
    assert m.blocks[0].args == {"units": "8", "skip": {"value": "relu_1"}}


def test_parameters_as_ops_defaults_from_earlier_parameters_and_named_sources():
    m = model_of("""
block unit(c, mid = c // 4, act = relu) {
    dense(mid) -> act -> dense(c)
}
model m {
    input x: [4]
    h = dense(16)
    h -> unit(16, act=tanh)
}""")
    assert [(n.id, n.op, n.shape) for n in m.nodes[1:]] == [
        ("unit_1.dense_1", "dense", [4]), ("unit_1.tanh_1", "tanh", [4]), ("unit_1.dense_2", "dense", [16])]
    assert m.node("unit_1.dense_1").inputs == ["dense_1"]


# ----------------------------------------------------------------------------------------------
# weights, training and export with nested names

SMALL = """
block basic(c) {
    x = identity
    main = conv2d(c, 3, padding=1, bias=false) -> batchnorm -> relu
    add(main, x) -> relu
}
model small {
    input image: [2, 6, 6]
    conv2d(4, 3, padding=1) -> relu
    basic(4)
    basic(4, name="second")
    flatten -> dense(3) -> softmax
}
train { loss = cross_entropy optimizer = adam(lr=0.01) epochs = 2 batch_size = 8 }
"""


def test_weights_files_round_trip_with_nested_keys(tmp_path):
    spec = tmp_path / "small.nnspec"
    spec.write_text(SMALL)
    model = nnc.load(spec)
    assert sorted(model.weights) == sorted([
        "conv2d_1.weight", "conv2d_1.bias", "basic_1.conv2d_1.weight",
        "basic_1.batchnorm_1.weight", "basic_1.batchnorm_1.bias", "basic_1.batchnorm_1.running_mean",
        "basic_1.batchnorm_1.running_var", "second.conv2d_1.weight", "second.batchnorm_1.weight",
        "second.batchnorm_1.bias", "second.batchnorm_1.running_mean", "second.batchnorm_1.running_var",
        "dense_1.weight", "dense_1.bias"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 2, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    model.fit(x, y)
    model.save_weights(tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz", allow_pickle=False) as saved:
        assert sorted(saved.files) == sorted(model.weights)
    again = nnc.load(spec)
    again.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_onnx_export_with_nested_names_is_verified(tmp_path):
    import onnx
    spec = tmp_path / "small.nnspec"
    spec.write_text(SMALL)
    model = nnc.load(spec)
    message = model.export(tmp_path / "small.onnx")
    assert "verified" in message
    proto = onnx.load(str(tmp_path / "small.onnx"))
    names = {i.name for i in proto.graph.initializer}
    # the batchnorms fold into the convolutions before them (docs/export.md): the folded weights
    # keep the nested names, with the suffix _bn
    assert {"conv2d_1.weight", "basic_1.conv2d_1.weight_bn", "second.conv2d_1.bias_bn"} <= names
    assert {"basic_1.conv2d_1", "second.conv2d_1", "second.add_1"} <= {n.name for n in proto.graph.node}


def test_the_resnet_example_trains_and_exports(tmp_path, capsys):
    """specs/resnet_small.nnspec on generated CIFAR-shaped data (fewer images than its own data)."""
    import importlib.util
    script = ROOT / "specs" / "data" / "make_shapes.py"
    spec = importlib.util.spec_from_file_location("make_shapes", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x, y = module.make(96, seed=7)
    np.savez(tmp_path / "shapes.npz", x=x, y=y)
    from nnc.cli import main
    rc = main(["train", str(ROOT / "specs" / "resnet_small.nnspec"), "--data", f'npz("{tmp_path / "shapes.npz"}")',
               "--set", "epochs=2", "--out", str(tmp_path / "run"), "--quiet"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    with np.load(tmp_path / "run" / "weights.npz", allow_pickle=False) as w:
        assert w["stage2.down_1.conv2d_3.weight"].shape == (16, 8, 1, 1)     # the projection shortcut
        assert w["stage3.basic_1.batchnorm_2.running_var"].shape == (32,)
    assert (tmp_path / "run" / "model.onnx").stat().st_size > 100_000


# ----------------------------------------------------------------------------------------------
# a known model: torchvision's ResNet-18 (hand-computed figures, no torch needed)

RESNET18 = """
block basic(c) {
    x = identity
    main = conv2d(c, 3, padding=1, bias=false) -> batchnorm -> relu
        -> conv2d(c, 3, padding=1, bias=false) -> batchnorm
    add(main, x) -> relu
}

block down(c) {
    x = identity
    main = conv2d(c, 3, stride=2, padding=1, bias=false) -> batchnorm -> relu
        -> conv2d(c, 3, padding=1, bias=false) -> batchnorm
    skip = x -> conv2d(c, 1, stride=2, bias=false) -> batchnorm
    add(main, skip) -> relu
}

let base = 64

model resnet18 {
    input image: [3, 224, 224]
    conv2d(base, 7, stride=2, padding=3, bias=false) -> batchnorm -> relu
        -> maxpool2d(3, stride=2, padding=1)
    basic(base) -> basic(base)
    down(2 * base) -> basic(2 * base)
    down(4 * base) -> basic(4 * base)
    down(8 * base) -> basic(8 * base)
    globalavgpool2d -> dense(1000)
}
"""


def test_resnet18_has_torchvisions_parameter_and_flop_counts(capsys):
    """11,689,512 parameters (torchvision.models.resnet18) and 1,814,073,344 multiply-adds at
    224x224 (convolutions and the classifier), i.e. 3,628,146,688 FLOPs, as `nnc summary` shows."""
    m = model_of(RESNET18)
    assert m.params == 11_689_512
    assert m.flops == 3_628_146_688
    assert m.state == 2 * (64 + 64 * 4 + 128 * 5 + 256 * 5 + 512 * 5)  # running mean and var per batchnorm
    from nnc.cli import main
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        spec = Path(d) / "resnet18.nnspec"
        spec.write_text(RESNET18)
        assert main(["summary", str(spec)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^total\s.*\b11,689,512\s+3,628,146,688$", out, re.M), out[-600:]
    assert "layer4" not in out and "down_3.conv2d_3" in out   # nnc's names: the third `down` use


# ----------------------------------------------------------------------------------------------
# diagnostics

TWICE = """block stage(c) {
    conv2d(c, 3, padding=same) -> relu
    maxpool2d(2)
}
model m {
    input x: [64]
    dense(32)
    stage(16)
    stage(32)
}
"""


def test_an_error_in_a_body_used_twice_is_reported_once_with_a_note():
    (d,) = errors_of(TWICE)
    assert (d.code, d.span.line) == ("E202", 2)
    (note,) = d.notes
    assert note.message == "expanded from `stage(16)` at line 8 (c = 16)"
    assert note.span.line == 8


def test_a_use_whose_arguments_trigger_the_error_is_named():
    (d,) = errors_of("""block unit(c) {
    dense(c) -> reshape([4, -1])
}
model m {
    input x: [4]
    a = unit(8)
    b = x -> unit(6)
}""")
    assert (d.code, d.span.line) == ("E205", 2)
    assert [n.message for n in d.notes] == ["expanded from `unit(6)` at line 7 (c = 6)"]


def test_nested_uses_give_one_note_per_level_innermost_first():
    (d,) = errors_of("""block inner(c) {
    conv2d(c, 3)
}
block outer(c) {
    inner(c * 2)
}
model m {
    input x: [8]
    outer(4)
}""")
    assert [n.message for n in d.notes] == ["expanded from `inner(c * 2)` at line 5 (c = 8)",
                                             "expanded from `outer(4)` at line 9 (c = 4)"]


@pytest.mark.parametrize("body, code, message", [
    ("block b(c) { dense(c) }\nmodel m { input x: [2] b(2, d=3) }", "E302", "block `b` has no parameter `d`"),
    ("block b(width) { dense(width) }\nmodel m { input x: [2] b(widht=3) }", "E302", "no parameter `widht`"),
    ("block b(c) { dense(c) }\nmodel m { input x: [2] b() }", "E403", "block `b` needs `c`"),
    ("block b(c) { dense(c) }\nmodel m { input x: [2] b(1, 2) }", "E404", "takes 1 positional argument"),
    ("block b(c) { dense(c) }\nmodel m { input x: [2] b(1, c=2) }", "E309", "`c` is given twice"),
    ("block b(c) { dense(c) }\nmodel m { input x: [2] bb(1) }", "E301", "unknown op or value `bb`"),
    ("block b(c) { b(c) }\nmodel m { input x: [2] b(1) }", "E316", "block `b` uses itself (b -> b)"),
    ("block a(c) { b(c) }\nblock b(c) { a(c) }\nmodel m { input x: [2] a(1) }", "E316", "(a -> b -> a)"),
    ("block b(c = 1, d) { relu }\nmodel m { input x: [2] b(1, 2) }", "E315", "no default but follows"),
    ("block b(c, c) { relu }\nmodel m { input x: [2] b(1, 2) }", "E315", "two parameters named `c`"),
    ("block b(name) { relu }\nmodel m { input x: [2] b(1) }", "E315", "parameter called `name`"),
    ("block dense(c) { relu }\nmodel m { input x: [2] relu }", "E305", "has the name of an op"),
    ("block b() { relu }\nblock b() { tanh }\nmodel m { input x: [2] b }", "E304", "defined twice"),
    ("let b = 3\nblock b() { relu }\nmodel m { input x: [2] b }", "E304", "both a block and a constant"),
    ("block b() { }\nmodel m { input x: [2] b }", "E317", "has no statements"),
    ("block b() { relu }\nmodel m { input x: [2] b = dense(2)\n b }", "E305", "name of a block"),
    ("block b() { input y: [2] }\nmodel m { input x: [2] b }", "E116", "inside a block"),
    ("block b() { output x }\nmodel m { input x: [2] b }", "E115", "inside a block"),
    ("block b(c) { dense(c) }\nmodel m { input x: [2] b(nope) }", "E303", "unknown constant or value `nope`"),
    ("block b(c) { dense(c) }\nmodel m { input x: [2] h = relu\n b(h) }", "E401", "expected an integer"),
    ("block b() { dense(2) }\nmodel m { input x: [2] b(name=3) }", "E401", "`name` must be a string"),
    ("block b() { dense(2) }\nmodel m { input x: [2] b(name=\"u\")\n dense(2, name=\"u\") }", "E308",
     "layer name `u` is used twice"),
])
def test_block_errors(body, code, message):
    errs = errors_of(body)
    assert any(d.code == code and message in d.message for d in errs), [(d.code, d.message) for d in errs]


def test_an_error_at_a_use_is_not_repeated_in_the_body():
    """A bad argument is reported at the use; the body is not expanded (no cascade)."""
    errs = errors_of("block b(c) { dense(c) -> conv2d(c, 3) }\nmodel m { input x: [2] b(widht=3) }")
    assert sorted(d.code for d in errs) == ["E302", "E403"]      # `widht` is not close to `c`


def test_an_unused_block_is_a_warning():
    warnings: list = []
    check_source("block head(k) { dense(k) }\nmodel m { input x: [2] dense(1) }", "s.nnspec", warnings=warnings)
    assert [(w.code, w.message) for w in warnings] == [("W301", "block `head` is never used")]


def test_blocks_in_the_language_reference_compile():
    """The worked examples of docs/language.md section 3.7 are real specs."""
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    section = text[text.index("### 3.7 Blocks"):text.index("### 3.8")]
    examples = [b for b in re.findall(r"```\n(.*?)```", section, re.S) if "error[" not in b]
    assert len(examples) == 4
    counts = {}
    for src in examples:
        if "model" not in src:  # the ResNet blocks: use them
            src += "model m {\n input image: [3, 32, 32]\n conv2d(64, 3, padding=1)\n stage(64)\n stage(128)\n}\n"
        m = model_of(src)
        counts[m.name] = m.params
    assert counts["vgg11"] == 132_863_336  # torchvision.models.vgg11
    assert set(counts) == {"net", "m", "vgg11", "autoencoder"}
