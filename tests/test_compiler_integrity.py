"""The compiler keeps what a spec says: built-in value names cannot be redefined, a constant that
names nothing is an error where it is defined, one error does not breed others, a misplaced
optimizer parameter points where it goes, warnings are shown without failing, and a folder
without specs is not a success (issue 7).

Golden cases for each diagnostic are in tests/errors/; these tests cover what a golden file
cannot: every built-in name, the command-line paths (``--set``, ``train``, empty folders) and the
output formats.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import run
from nnc.errors import NncError
from nnc.compiler.lower import check_source, compile_source, parse_overrides
from nnc.compiler.ops import OPS
from nnc.compiler.trainspec import BUILTIN_DATASETS, LOSSES, OPTIMIZERS, SCHEDULES, SOURCES, TRAIN_KEYS
from nnc.vocab import INITIALIZERS
from nnc.compiler.builtin_names import builtin_values

ROOT = Path(__file__).resolve().parent.parent

CNN = """model cnn {{
    input image: [1, 8, 8]
    {body}
    flatten -> dense(3) -> softmax
}}
"""


def diagnostics(source: str, **kw) -> list:
    with pytest.raises(NncError) as info:
        check_source(source, "t.nnspec", **kw)
    return info.value.diagnostics


# ----------------------------------------------------------------------------------------------
# built-in value names

def test_builtin_values_come_from_the_vocabularies():
    names = set(builtin_values())
    assert {"same", "valid"} <= names
    assert set(INITIALIZERS.signatures) <= names
    for catalogue in (LOSSES, OPTIMIZERS, SCHEDULES, SOURCES):
        assert set(catalogue.signatures) <= names
    assert set(BUILTIN_DATASETS) <= names
    assert set(TRAIN_KEYS["metrics"].type.vocabulary()) <= names
    assert {"float32", "float64"} <= names          # train `dtype`
    assert {"tanh", "relu"} <= names                # rnn `activation`
    assert "lr" not in names and "units" not in names  # parameter names are not values


@pytest.mark.parametrize("name", sorted(builtin_values()))
def test_a_let_may_not_take_a_builtin_value_name(name):
    diags = diagnostics(f"let {name} = 1\nmodel m {{\n    input x: [4]\n    dense(3)\n}}\n")
    assert [d.code for d in diags] == ["E305" if name in OPS else "E314"]
    assert diags[0].span.line == 1 and diags[0].span.column == 5


def test_a_let_inside_the_model_may_not_take_one_either():
    diags = diagnostics(CNN.format(body="let same = 1\n    conv2d(4, 3, padding=same)"))
    assert [d.code for d in diags] == ["E314"]


@pytest.mark.parametrize("name", sorted(n for n in builtin_values() if n not in OPS))
def test_a_builtin_name_in_the_wrong_place_never_hints_a_let(name):
    for body in (f"maxpool2d(2, padding={name})", f"conv2d({name}, 3)"):
        for d in diagnostics(CNN.format(body=body)):
            assert f"let {name}" not in (d.hint or ""), (body, d)
            assert "unknown constant" not in d.message, (body, d)


def test_pool_padding_same_says_what_pool_padding_takes():
    (d,) = diagnostics(CNN.format(body="maxpool2d(2, padding=same)"))
    assert d.code == "E401"
    assert "an integer >= 0 or a list [ph, pw]" in d.message
    assert "conv2d" in d.hint and "padding=same" in d.hint


def test_an_op_name_as_a_value_is_not_an_unknown_constant():
    (d,) = diagnostics(CNN.format(body="conv2d(4, 3, padding=relu)"))
    assert "let relu" not in (d.hint or "") and "is an op" in d.hint


def test_uses_of_a_refused_name_are_not_reported_again():
    src = "let dense = 16\nmodel m {\n    input x: [4]\n    conv1d_out = reshape([1, 4]) -> conv1d(dense, 1)\n}\n"
    assert [d.code for d in diagnostics(src)] == ["E305"]
    src = "let zeros = 3\nmodel m {\n    input x: [4]\n    dense(zeros)\n}\n"
    assert [d.code for d in diagnostics(src)] == ["E314"]


# ----------------------------------------------------------------------------------------------
# constants that name nothing

@pytest.mark.parametrize("lets, message", [
    ("let a = a", "defined in terms of itself"),
    ("let a = b\nlet b = a", "defined in terms of each other"),
    ("let a = b\nlet b = 3", "used before it is defined"),
    ("let a = nothing", "unknown constant `nothing`"),
    ("let a = [1, nothing]", "unknown constant `nothing`"),
    ("let a = adam(lr=nothing)", "unknown constant `nothing`"),
])
def test_a_let_naming_nothing_is_an_error_even_unused(lets, message):
    diags = diagnostics(lets + "\nmodel m {\n    input x: [4]\n    dense(3)\n}\n")
    assert [d.code for d in diags] == ["E303"]
    assert message in diags[0].message
    assert diags[0].span.line == 1


def test_a_let_naming_an_op_or_a_builtin_value_is_fine():
    src = ("let act = relu\nlet pad = same\nlet opt = adam(lr=0.01)\nlet again = pad\n"
           "model m {\n    input image: [1, 8, 8]\n    conv2d(4, 3, padding=again) -> act\n"
           "    flatten -> dense(3)\n}\ntrain {\n    loss = mse\n    optimizer = opt\n}\n")
    program = check_source(src, "t.nnspec")
    assert program["model"]["nodes"][0]["attrs"]["padding"] == "same"


def test_the_uses_of_a_bad_constant_are_not_reported_again():
    src = ("let width = widht\nlet opt = adam(lr=rate)\nlet more = width\n"
           "model m {\n    input x: [4]\n    dense(width) -> dense(more)\n    repeat width {\n        relu\n    }\n"
           "    dense(3)\n    assert params <= width\n}\ntrain {\n    loss = mse\n    optimizer = opt\n}\n")
    diags = diagnostics(src)
    assert [(d.code, d.span.line) for d in diags] == [("E303", 1), ("E303", 2)]


def test_a_set_value_naming_nothing_is_reported_in_the_set_text():
    src = "let width = 8\nmodel m {\n    input x: [4]\n    dense(width)\n}\n"
    diags = diagnostics(src, overrides=parse_overrides(["width=wdth"]))
    assert [(d.code, d.path) for d in diags] == [("E303", "<--set width>")]


# ----------------------------------------------------------------------------------------------
# no cascades into assertions

def test_a_shape_error_does_not_cascade_into_assert_output():
    diags = diagnostics(CNN.format(body="dense(10)\n    assert output == [10]\n    assert params <= 10"))
    assert [d.code for d in diags] == ["E201"]


def test_an_unknown_output_does_not_cascade_into_assert_output():
    src = "model m {\n    input x: [4]\n    h = dense(3)\n    output hh\n    assert output == [3]\n}\n"
    assert [d.code for d in diagnostics(src)] == ["E303"]


def test_assert_output_on_two_outputs_is_still_an_error():
    src = ("model m {\n    input x: [4]\n    a = dense(3)\n    b = x -> dense(2)\n    output a, b\n"
           "    assert output == [3]\n}\n")
    assert [d.code for d in diagnostics(src)] == ["E502"]


# ----------------------------------------------------------------------------------------------
# optimizer parameters written as train keys

IRIS = ("model iris_mlp {\n    input features: [4]\n    dense(3) -> softmax\n}\n"
        "train {\n    data = dataset(\"iris\")\n    loss = cross_entropy\n%s}\n")


@pytest.mark.parametrize("entries, hint", [
    ("    learning_rate = 0.01\n", "`optimizer = adam(lr=0.01)`"),
    ("    lr = 3e-4\n", "`optimizer = adam(lr=3e-4)`"),
    ("    optimizer = sgd(lr=0.1)\n    momentum = 0.9\n", "`optimizer = sgd(lr=0.1, momentum=0.9)`"),
    ("    optimizer = sgd\n    weight_decay = 1e-4\n", "`optimizer = sgd(weight_decay=1e-4)`"),
    ("    momentum = 0.9\n", "`optimizer = sgd(momentum=0.9)`"),
    ("    every = 5\n", "`schedule = step(every=5)`"),
])
def test_an_optimizer_parameter_as_a_train_key_points_at_the_optimizer(entries, hint):
    diags = diagnostics(IRIS % entries)
    assert [d.code for d in diags] == ["E307"]
    assert hint in diags[0].hint


def test_set_learning_rate_points_at_set_optimizer(tmp_path, capsys):
    spec = tmp_path / "iris.nnspec"
    spec.write_text(IRIS % "    optimizer = rmsprop(rho=0.8)\n")
    code, _, err = run(["summary", spec, "--set", "learning_rate=0.05"], capsys)
    assert code == 1
    assert "error[E307]" in err
    assert "--set 'optimizer=rmsprop(rho=0.8, lr=0.05)'" in err


# ----------------------------------------------------------------------------------------------
# warnings

SIGMOID_CE = (IRIS % "    epochs = 1\n").replace("softmax", "sigmoid")


def test_warnings_do_not_fail_and_are_not_in_the_ir():
    program = compile_source(SIGMOID_CE, "t.nnspec")
    assert [(w.code, w.severity) for w in program.warnings] == [("W601", "warning")]
    assert "W601" not in program.ir_json()
    warnings: list = []
    check_source(SIGMOID_CE, "t.nnspec", warnings=warnings)
    assert [w.code for w in warnings] == ["W601"]


def test_matching_loss_and_activation_has_no_warning():
    assert compile_source(IRIS % "", "t.nnspec").warnings == []
    bce = (IRIS % "").replace("dense(3) -> softmax", "dense(1) -> sigmoid").replace("cross_entropy",
                                                                                   "binary_cross_entropy")
    assert compile_source(bce.replace('    data = dataset("iris")\n', ""), "t.nnspec").warnings == []


def test_a_file_with_an_error_and_a_warning_reports_both():
    src = SIGMOID_CE.replace("[4]", "[5]")
    diags = diagnostics(src)
    assert sorted((d.code, d.severity) for d in diags) == [("E605", "error"), ("W601", "warning")]


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_check_prints_a_warning_and_exits_0(tmp_path, capsys, fmt):
    spec = tmp_path / "w.nnspec"
    spec.write_text(SIGMOID_CE)
    code, out, err = run(["check", "--format", fmt, spec], capsys)
    assert code == 0
    if fmt == "text":
        assert f"{spec}:7:12: warning[W601]: cross_entropy after `sigmoid`" in out
        assert "no errors, 1 warning" in err
    elif fmt == "json":
        (d,) = json.loads(out)["diagnostics"]
        assert (d["code"], d["severity"], d["line"], d["column"]) == ("W601", "warning", 7, 12)
    else:
        assert out.startswith("::warning file=") and "title=W601" in out


def test_train_shows_the_warning_and_trains(tmp_path, capsys):
    spec = tmp_path / "w.nnspec"
    spec.write_text(SIGMOID_CE)
    code, _, err = run(["train", spec, "--out", tmp_path / "run", "--quiet"], capsys)
    assert code == 0
    assert "warning[W601]" in err and "loss = cross_entropy" in err
    assert (tmp_path / "run" / "weights.npz").exists()


# ----------------------------------------------------------------------------------------------
# a folder without specs

def test_check_on_a_folder_without_specs_fails_and_names_it(tmp_path, capsys):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a spec")
    code, _, err = run(["check", empty], capsys)
    assert code == 1
    assert str(empty) in err and "no .nnspec files" in err
    assert "hint: check the path" in err


def test_an_empty_folder_fails_the_check_but_the_other_paths_are_checked(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    good = tmp_path / "ok.nnspec"
    good.write_text("model m {\n    input x: [4]\n    dense(3)\n}\n")
    code, out, err = run(["check", "--format", "json", tmp_path / "empty", good], capsys)
    assert code == 1
    assert json.loads(out) == {"files_checked": 1, "diagnostics": []}
    assert "empty" in err


def test_the_projects_specs_check(capsys):
    code, _, err = run(["check", ROOT / "specs"], capsys)
    assert code == 0, err
