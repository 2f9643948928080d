"""`nnc compile` to ONNX from the command line: exit codes 0 / 1 / 2, the report on stderr, the
default output name, --opset / --weights / --no-verify, and never a traceback. `nnc check` never
imports the exporter, onnx or onnxruntime."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from cli_helpers import run

ROOT = Path(__file__).resolve().parent.parent
XOR = ROOT / "specs" / "xor_mlp.nnspec"
SOFTMAX_AXIS0 = "model ax {\n    input x: [3, 4]\n    dense(5) -> softmax(axis=0)\n}\n"




def test_compile_writes_a_verified_model(tmp_path, capsys):
    out = tmp_path / "xor.onnx"
    code, stdout, err = run(["compile", XOR, "-o", out], capsys)
    assert code == 0, err
    assert f"wrote {out} (opset " in err and "verified: checker, shapes, onnxruntime max |diff|" in err
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["output"]
    assert sorted(os.listdir(tmp_path)) == ["xor.onnx"]


def test_default_output_is_named_after_the_model(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["compile", XOR], capsys)
    assert code == 0, err
    assert (tmp_path / "xor_mlp.onnx").exists()


def test_opset_and_no_verify(tmp_path, capsys):
    out = tmp_path / "xor13.onnx"
    code, _, err = run(["compile", XOR, "-o", out, "--opset", "13"], capsys)
    assert code == 0, err
    assert "(opset 13," in err
    assert onnx.load(str(out)).opset_import[0].version == 13
    code, _, err = run(["compile", XOR, "-o", out, "--no-verify"], capsys)
    assert code == 0 and "not verified" in err


def test_weights_file(tmp_path, capsys):
    from nnc.compiler.lower import compile_source
    from nnc.runtime.graph import Graph
    w = Graph(compile_source(XOR.read_text()).model).init_weights(3)
    np.savez(tmp_path / "w.npz", **w)
    code, _, err = run(["compile", XOR, "-o", tmp_path / "x.onnx", "--weights", tmp_path / "w.npz"], capsys)
    assert code == 0, err
    w["dense_1.weight"] = np.zeros((1, 1), np.float32)
    np.savez(tmp_path / "bad.npz", **w)
    code, _, err = run(["compile", XOR, "-o", tmp_path / "y.onnx", "--weights", tmp_path / "bad.npz"], capsys)
    assert code == 1 and "E753" in err and "dense_1.weight" in err
    assert not (tmp_path / "y.onnx").exists()


@pytest.mark.parametrize("args, code, text", [
    (["--opset", "5"], 1, "E802"),
    (["--opset", "9999"], 1, "E802"),
    (["--opset", "many"], 2, "invalid int value"),
    (["--emit", "tflite"], 2, "invalid choice"),
])
def test_bad_options(args, code, text, tmp_path, capsys):
    got, _, err = run(["compile", XOR, "-o", tmp_path / "m.onnx", *args], capsys)
    assert got == code and text in err
    assert os.listdir(tmp_path) == []


def test_an_op_the_opset_cannot_express_is_e801_at_its_line(tmp_path, capsys):
    spec = tmp_path / "ax.nnspec"
    spec.write_text(SOFTMAX_AXIS0)
    code, _, err = run(["compile", spec, "-o", tmp_path / "ax.onnx", "--opset", "12"], capsys)
    assert code == 1
    assert f"{spec}:3:17: error[E801]" in err and "needs opset 13" in err and "--opset 13" in err
    assert sorted(os.listdir(tmp_path)) == ["ax.nnspec"]
    code, _, err = run(["compile", spec, "-o", tmp_path / "ax.onnx", "--opset", "13"], capsys)
    assert code == 0, err


def test_unwritable_output_is_e804(tmp_path, capsys):
    code, _, err = run(["compile", XOR, "-o", tmp_path / "missing" / "m.onnx"], capsys)
    assert code == 1 and "E804" in err and "missing" in err
    assert os.listdir(tmp_path) == []


def test_missing_spec_is_a_usage_error(tmp_path, capsys):
    code, _, err = run(["compile", tmp_path / "nope.nnspec"], capsys)
    assert code == 2


def test_missing_weights_file_is_a_usage_error(tmp_path, capsys):
    code, _, err = run(["compile", XOR, "-o", tmp_path / "m.onnx", "--weights", tmp_path / "nope.npz"], capsys)
    assert code == 2


def test_missing_weights_file_fails_cleanly(tmp_path, capsys):
    code, _, err = run(["compile", XOR, "-o", tmp_path / "m.onnx", "--weights", tmp_path / "nope.npz"], capsys)
    assert code in (1, 2) and "nope.npz" in err
    assert os.listdir(tmp_path) == []


def test_real_process_exit_codes(tmp_path):
    """The installed entry point, as CI runs it: exit status and no traceback."""
    ok = subprocess.run([sys.executable, "-m", "nnc.cli", "compile", str(XOR), "-o", str(tmp_path / "x.onnx")],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stderr
    bad = subprocess.run([sys.executable, "-m", "nnc.cli", "compile", str(XOR), "--opset", "3",
                          "-o", str(tmp_path / "y.onnx")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and "E802" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "y.onnx").exists()


def test_check_never_imports_the_exporter():
    code = ("import sys\nfrom nnc.cli import main\nrc = main(['check', 'specs'])\n"
            "mods = [m for m in ('nnc.compiler.onnx_export', 'nnc.export', 'onnx', 'onnxruntime') if m in sys.modules]\n"
            "print(rc, mods)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "0 []"
