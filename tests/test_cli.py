"""The `nnc` command line (docs/language.md section 6): exit codes, output formats, several files and
folders, summary, compile --emit ir, schema, fmt --check, --set overrides, and never a traceback.

Verbs run in-process through ``nnc.cli.main`` (argparse's own errors raise ``SystemExit(2)``); a
few cases also run the installed console script to check the real process exit status.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GOOD = SPECS / "xor_mlp.nnspec"
CNN = SPECS / "digits_cnn.nnspec"

BAD_SPEC = """model broken {
    input x: [4]
    dense(8) -> rellu
    dense(3) -> softmax
}
"""
SYNTAX_ERROR = "model broken {\n    input x: [4]\n    dense(8 -> relu\n}\n"
DIAGNOSTIC_KEYS = {"path", "line", "column", "end_line", "end_column", "severity", "code", "message", "hint",
                   "notes"}




@pytest.fixture
def bad(tmp_path):
    p = tmp_path / "bad.nnspec"
    p.write_text(BAD_SPEC, encoding="utf-8")
    return p


# ----------------------------------------------------------------------------------------------
# exit codes

def test_valid_spec_exits_0(capsys):
    code, out, err = run(["check", GOOD], capsys)
    assert code == 0
    assert out == ""
    assert "checked 1 file: no errors" in err


def test_invalid_spec_exits_1(bad, capsys):
    code, out, err = run(["check", bad], capsys)
    assert code == 1
    assert f"{bad}:3:17: error[E301]: unknown op or value `rellu`" in out
    assert "hint: did you mean `relu`?" in out
    assert "1 error in 1 file" in err


@pytest.mark.parametrize("argv", [
    ["nosuchverb"],
    [],
    ["check"],                                  # missing PATH
    ["check", "--bogus", "specs"],              # unknown flag
    ["check", "--format", "xml", "specs"],      # bad choice
    ["check", "specs/does_not_exist.nnspec"],   # nonexistent path
    ["summary"],
    ["summary", "specs/does_not_exist.nnspec"],
    ["summary", "specs"],                       # a directory where one spec is expected
    ["compile", "--emit", "pdf", "specs/xor_mlp.nnspec"],
    ["compile", "--opset", "seventeen", "specs/xor_mlp.nnspec"],
    ["fmt"],
    ["fmt", "--check", "specs/does_not_exist.nnspec"],
    ["schema", "extra"],
])
def test_command_line_errors_exit_2(argv, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out, err = run(argv, capsys)
    assert code == 2, (argv, out, err)
    assert "error" in err
    assert out == ""


def test_nonexistent_path_names_it(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, _, err = run(["check", "specs/xor_mlp.nnspec", "nope/missing.nnspec"], capsys)
    assert code == 2
    assert "nope/missing.nnspec: no such file or directory" in err


def test_unreadable_file_is_E002(tmp_path, capsys, monkeypatch):
    p = tmp_path / "locked.nnspec"
    p.write_text("model m { input x: [2] dense(1) }")
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "locked.nnspec":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    code, out, _ = run(["check", p], capsys)
    assert code == 1
    assert "error[E002]: cannot read the file: Permission denied" in out


def test_console_script_exit_status(tmp_path):
    exe = shutil.which("nnc", path=str(Path(sys.executable).parent))
    if exe is None:  # pragma: no cover - the package is installed editable in the venv
        pytest.skip("the nnc console script is not installed next to this python")
    bad = tmp_path / "bad.nnspec"
    bad.write_text(BAD_SPEC)
    for argv, status in (([str(GOOD)], 0), ([str(bad)], 1), (["--bogus", str(GOOD)], 2),
                         ([str(tmp_path / "missing.nnspec")], 2)):
        res = subprocess.run([exe, "check", *argv], capture_output=True, text=True, timeout=60)
        assert res.returncode == status, (argv, res.stdout, res.stderr)
        assert "Traceback" not in res.stdout + res.stderr
    res = subprocess.run([exe, "nosuchverb"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and re.match(r"nnc \d+\.\d+", out)


# ----------------------------------------------------------------------------------------------
# output formats

def test_text_format_shows_line_caret_and_hint(bad, capsys):
    _, out, _ = run(["check", bad], capsys)
    assert out.splitlines() == [
        f"{bad}:3:17: error[E301]: unknown op or value `rellu`",
        "        dense(8) -> rellu",
        "                    ^^^^^",
        "  hint: did you mean `relu`?",
    ]


def test_json_format(bad, capsys):
    code, out, _ = run(["check", "--format", "json", bad, GOOD], capsys)
    assert code == 1
    report = json.loads(out)
    assert set(report) == {"files_checked", "diagnostics"}
    assert report["files_checked"] == 2
    (d,) = report["diagnostics"]
    assert set(d) == DIAGNOSTIC_KEYS
    assert d == {"path": str(bad), "line": 3, "column": 17, "end_line": 3, "end_column": 22,
                 "severity": "error", "code": "E301", "message": "unknown op or value `rellu`",
                 "hint": "did you mean `relu`?", "notes": []}


def test_json_format_of_a_valid_spec(capsys):
    code, out, err = run(["check", "--format", "json", GOOD], capsys)
    assert code == 0
    assert json.loads(out) == {"files_checked": 1, "diagnostics": []}


def test_json_columns_are_one_based_and_end_exclusive(tmp_path, capsys):
    p = tmp_path / "s.nnspec"
    p.write_text("let model = 3\n")
    _, out, _ = run(["check", "--format", "json", p], capsys)
    (d,) = json.loads(out)["diagnostics"]
    assert (d["line"], d["column"], d["end_line"], d["end_column"]) == (1, 5, 1, 10)   # `model`
    assert d["code"] == "E102" and d["hint"]


def test_json_hint_is_null_when_there_is_none(tmp_path, capsys):
    p = tmp_path / "s.nnspec"
    p.write_text("model m {\n    input x: [4]\n    h = dense(2)\n    output h, h\n}\n")
    _, out, _ = run(["check", "--format", "json", p], capsys)
    (d,) = json.loads(out)["diagnostics"]
    assert d["code"] == "E304" and "hint" in d


def test_github_format(bad, capsys):
    code, out, err = run(["check", "--format", "github", bad, GOOD], capsys)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"::error file={bad},line=3,col=17,")
    assert "endLine=3,endColumn=22,title=E301::[E301] unknown op or value `rellu`" in lines[0]
    assert lines[0].endswith("%0Ahint: did you mean `relu`?")   # newlines are escaped in the message


def test_github_format_escapes_properties(tmp_path, capsys):
    d = tmp_path / "a,b:c"
    d.mkdir()
    p = d / "s.nnspec"
    p.write_text(BAD_SPEC)
    _, out, _ = run(["check", "--format", "github", p], capsys)
    assert "a%2Cb%3Ac" in out.split("::")[1]


# ----------------------------------------------------------------------------------------------
# several files and folders

def test_several_files_and_a_directory(tmp_path, capsys):
    (tmp_path / "good.nnspec").write_bytes(GOOD.read_bytes())
    (tmp_path / "bad1.nnspec").write_text(BAD_SPEC)
    sub = tmp_path / "nested" / "deeper"
    sub.mkdir(parents=True)
    (sub / "bad2.nnspec").write_text(SYNTAX_ERROR)
    (sub / "good2.nnspec").write_bytes(CNN.read_bytes())
    (sub / "notes.txt").write_text("model? no: not a spec")
    code, out, _ = run(["check", "--format", "json", tmp_path], capsys)
    assert code == 1
    report = json.loads(out)
    assert report["files_checked"] == 4
    paths = {Path(d["path"]).name for d in report["diagnostics"]}
    assert paths == {"bad1.nnspec", "bad2.nnspec"}
    codes = sorted(d["code"] for d in report["diagnostics"])
    assert codes == ["E102", "E301"]


def test_directory_and_file_in_text_mode(tmp_path, capsys):
    (tmp_path / "bad1.nnspec").write_text(BAD_SPEC)
    (tmp_path / "bad2.nnspec").write_text(SYNTAX_ERROR)
    code, out, err = run(["check", tmp_path, GOOD], capsys)
    assert code == 1
    assert "bad1.nnspec:3:17: error[E301]" in out
    assert "bad2.nnspec:3:13: error[E102]" in out
    assert "checked 3 files: 2 errors in 2 files" in err


def test_example_specs_folder_is_clean(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out, _ = run(["check", "--format", "json", "specs"], capsys)
    report = json.loads(out)
    assert code == 0 and report["diagnostics"] == []
    assert report["files_checked"] == len(list(SPECS.rglob("*.nnspec")))  # the zoo included


def test_empty_directory(tmp_path, capsys):
    # a CI step pointed at the wrong folder must not pass: no spec to check is an error
    code, out, err = run(["check", tmp_path], capsys)
    assert code == 1
    assert "no .nnspec files" in err


def test_every_error_of_every_file_is_reported(tmp_path, capsys):
    (tmp_path / "a.nnspec").write_text("model m {\n input x: [4]\n dense(8) -> rellu\n dropout(2)\n}\n")
    (tmp_path / "b.nnspec").write_text("model m {\n input x: [4]\n dense(0)\n}\ntrain { epoch = 3 }\n")
    _, out, _ = run(["check", "--format", "json", tmp_path], capsys)
    found = sorted((Path(d["path"]).name, d["code"]) for d in json.loads(out)["diagnostics"])
    assert found == [("a.nnspec", "E301"), ("a.nnspec", "E402"), ("b.nnspec", "E307"), ("b.nnspec", "E402"),
                     ("b.nnspec", "E601")]


# ----------------------------------------------------------------------------------------------
# summary

def test_summary_of_digits_cnn(capsys):
    code, out, _ = run(["summary", CNN], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "model digits_cnn"
    rows = {line.split()[0]: line.split() for line in lines if line and line.split()[0] in {
        "image", "conv2d_1", "relu_1", "maxpool2d_1", "conv2d_2", "relu_2", "flatten_1", "dense_1", "relu_3",
        "dropout_1", "dense_2", "softmax_1", "total"}}
    assert len(rows) == 13
    assert " ".join(rows["conv2d_1"]) == "conv2d_1 conv2d [16, 8, 8] 160 18,432"
    assert " ".join(rows["conv2d_2"]) == "conv2d_2 conv2d [32, 4, 4] 4,640 147,456"
    assert " ".join(rows["flatten_1"]) == "flatten_1 flatten [512] 0 0"
    assert " ".join(rows["dense_1"]) == "dense_1 dense [64] 32,832 65,536"
    assert " ".join(rows["dense_2"]) == "dense_2 dense [10] 650 1,280"
    assert " ".join(rows["image"]) == "image input [1, 8, 8] 0 0"
    assert rows["total"][-2:] == ["38,282", "232,704"]
    assert "trainable parameters: 38,282" in out
    assert "FLOPs per example: 232,704" in out
    # one row per layer, in graph order
    order = [line.split()[0] for line in lines if line.split() and line.split()[0] in rows]
    assert order == ["image", "conv2d_1", "relu_1", "maxpool2d_1", "conv2d_2", "relu_2", "flatten_1",
                     "dense_1", "relu_3", "dropout_1", "dense_2", "softmax_1", "total"]


def test_summary_of_a_bad_spec_exits_1(bad, capsys):
    code, out, err = run(["summary", bad], capsys)
    assert code == 1
    assert "error[E301]" in out + err


@pytest.mark.parametrize("spec", sorted(SPECS.glob("*.nnspec")), ids=lambda p: p.stem)
def test_summary_of_every_example(spec, capsys):
    code, out, _ = run(["summary", spec], capsys)
    assert code == 0 and out.startswith("model ")


# ----------------------------------------------------------------------------------------------
# compile --emit ir and schema

def test_compile_emit_ir(capsys):
    code, out, _ = run(["compile", "--emit", "ir", CNN], capsys)
    assert code == 0
    ir = json.loads(out)
    model = ir["model"]
    assert model["name"] == "digits_cnn"
    assert model["params"] == 38_282 and model["flops"] == 232_704
    assert model["inputs"][0]["shape"] == [1, 8, 8]
    shapes = {n["id"]: n["shape"] for n in model["nodes"]}
    assert shapes["conv2d_1"] == [16, 8, 8]
    assert shapes["maxpool2d_1"] == [16, 4, 4]
    assert shapes["conv2d_2"] == [32, 4, 4]
    assert shapes["flatten_1"] == [512]
    assert shapes["softmax_1"] == [10]
    assert all(isinstance(n["span"]["line"], int) and n["span"]["line"] >= 1 for n in model["nodes"])
    assert model["outputs"][0]["shape"] == [10]
    assert ir["train"]["loss"]["kind"] == "cross_entropy"


def test_compile_emit_ir_to_a_file(tmp_path, capsys):
    out_file = tmp_path / "ir.json"
    code, out, err = run(["compile", "--emit", "ir", "-o", out_file, GOOD], capsys)
    assert code == 0 and out == ""
    assert json.loads(out_file.read_text())["model"]["name"] == "xor_mlp"


def test_compile_a_bad_spec_exits_1(bad, capsys, tmp_path):
    code, out, err = run(["compile", "--emit", "ir", bad], capsys)
    assert code == 1
    assert "error[E301]" in out + err


def test_schema_is_json_with_a_discriminated_node_union(capsys):
    code, out, _ = run(["schema"], capsys)
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    node = schema["$defs"]["Node"]
    assert node["discriminator"] == {"propertyName": "op"}
    variants = node["oneOf"]
    tags = [v["properties"]["op"]["const"] for v in variants]
    assert len(tags) == len(set(tags))
    assert {"dense", "conv2d", "lstm", "add", "concat", "softmax", "reshape"} <= set(tags)
    dense = next(v for v in variants if v["properties"]["op"]["const"] == "dense")
    assert "units" in dense["properties"]["attrs"]["properties"]


def test_the_ir_matches_its_schema(capsys):
    """Every node of an example's IR has the properties its variant requires."""
    _, out, _ = run(["schema"], capsys)
    variants = {v["properties"]["op"]["const"]: v for v in json.loads(out)["$defs"]["Node"]["oneOf"]}
    for spec in sorted(SPECS.glob("*.nnspec")):
        _, ir_text, _ = run(["compile", "--emit", "ir", spec], capsys)
        for n in json.loads(ir_text)["model"]["nodes"]:
            v = variants[n["op"]]
            assert set(v["required"]) <= set(n), (spec.name, n["id"])
            assert set(n["attrs"]) <= set(v["properties"]["attrs"]["properties"]) | {"pads", "overhang", "axis", "shape",
                                                                                       "suffixes"}


# ----------------------------------------------------------------------------------------------
# --set

def test_set_changes_summary_and_ir(capsys):
    code, out, _ = run(["summary", CNN, "--set", "width=8"], capsys)
    assert code == 0
    assert re.search(r"conv2d_2\s+conv2d\s+\[8, 4, 4\]\s+1,160\s+36,864", out)
    assert re.search(r"flatten_1\s+flatten\s+\[128\]", out)
    code, out, _ = run(["compile", "--emit", "ir", CNN, "--set", "width=8"], capsys)
    assert code == 0
    shapes = {n["id"]: n["shape"] for n in json.loads(out)["model"]["nodes"]}
    assert shapes["conv2d_2"] == [8, 4, 4] and shapes["flatten_1"] == [128]
    assert json.loads(out)["constants"]["width"] == "8"


def test_set_train_keys(capsys):
    code, out, _ = run(["compile", "--emit", "ir", CNN, "--set", "epochs=3", "--set", "optimizer=sgd(lr=0.1)"],
                       capsys)
    assert code == 0
    train = json.loads(out)["train"]
    assert train["epochs"] == 3 and train["optimizer"]["kind"] == "sgd" and train["optimizer"]["lr"] == 0.1


@pytest.mark.parametrize("verb", [["summary"], ["compile", "--emit", "ir"]])
def test_set_unknown_key_is_E307_with_did_you_mean(verb, capsys):
    code, out, err = run([*verb, CNN, "--set", "widht=8"], capsys)
    assert code == 1
    assert "error[E307]" in err and "did you mean `width`?" in err
    code, out, err = run([*verb, CNN, "--set", "nosuch=1"], capsys)
    assert code == 1
    assert "error[E307]" in err and "nosuch" in err


@pytest.mark.parametrize("value", ["width=(", "width=[1,", "width=3 4", "width"])
def test_set_syntax_errors_exit_1(value, capsys):
    code, out, err = run(["summary", CNN, "--set", value], capsys)
    assert code == 1
    assert re.search(r"error\[E10\d\]", err)


def test_set_bad_value_is_reported_at_its_use(capsys):
    code, _, err = run(["summary", CNN, "--set", "width=1.5"], capsys)
    assert code == 1
    assert "digits_cnn.nnspec:9:12: error[E401]" in err


def test_set_syntax_error_shows_the_value_not_the_spec(capsys):
    _, _, err = run(["summary", CNN, "--set", "width=("], capsys)
    assert "# Small CNN" not in err
    assert "(" in err.splitlines()[1]


def test_set_bad_train_value_is_not_placed_in_the_spec(capsys):
    _, _, err = run(["summary", CNN, "--set", "epochs=0"], capsys)
    assert "digits_cnn.nnspec:1:17" not in err
    assert "--set epochs" in err


# ----------------------------------------------------------------------------------------------
# fmt

UGLY = "model m {\ninput x:[4]\n  dense( 3 )->relu   # keep me\n}\n"


def test_fmt_check_exit_codes(tmp_path, capsys):
    clean = tmp_path / "clean.nnspec"
    clean.write_bytes(GOOD.read_bytes())
    ugly = tmp_path / "ugly.nnspec"
    ugly.write_text(UGLY)
    code, out, _ = run(["fmt", "--check", clean], capsys)
    assert code == 0
    code, out, err = run(["fmt", "--check", ugly], capsys)
    assert code == 1
    assert "ugly.nnspec" in out + err
    assert ugly.read_text() == UGLY, "--check writes nothing"
    code, _, _ = run(["fmt", ugly], capsys)
    assert code == 0
    assert ugly.read_text() != UGLY and "# keep me" in ugly.read_text()
    code, _, _ = run(["fmt", "--check", ugly], capsys)
    assert code == 0


def test_fmt_check_a_directory(tmp_path, capsys):
    (tmp_path / "a.nnspec").write_bytes(GOOD.read_bytes())
    (tmp_path / "b.nnspec").write_text(UGLY)
    code, out, err = run(["fmt", "--check", tmp_path], capsys)
    assert code == 1
    assert "b.nnspec" in out + err and "a.nnspec" not in out


def test_fmt_check_a_broken_spec_exits_1(tmp_path, capsys):
    p = tmp_path / "broken.nnspec"
    p.write_text(SYNTAX_ERROR)
    code, out, err = run(["fmt", "--check", p], capsys)
    assert code == 1
    assert "error[E102]" in out + err
    assert p.read_text() == SYNTAX_ERROR


def test_example_specs_are_formatted(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out, err = run(["fmt", "--check", "specs"], capsys)
    assert code == 0, out + err
