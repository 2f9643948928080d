"""`nnc compile` to ONNX from the command line: exit codes 0 / 1 / 2, the report on stderr, the
default output name, --opset / --weights / --no-verify, and never a traceback. `nnc check` never
imports the exporter, onnx or onnxruntime."""
from __future__ import annotations

import os
import stat
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
            "mods = [m for m in ('nnc.onnx', 'nnc.onnx.emitters', 'nnc.onnx.export', 'onnx', 'onnxruntime') if m in sys.modules]\n"
            "print(rc, mods)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "0 []"


# ----------------------------------------------------------------------------------------------
# the output path (contract 6.3): one rule for every output, through nnc.util's atomic writer

def _compile(args, capsys):
    code, stdout, err = run(["compile", XOR, *args], capsys)
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize("emit", [[], ["--emit", "ir"]], ids=["onnx", "ir"])
def test_a_missing_parent_is_e804_with_a_mkdir_hint(tmp_path, capsys, emit):
    code, err = _compile([*emit, "-o", tmp_path / "out" / "m.out"], capsys)
    assert code == 1 and "error[E804]" in err and "does not exist" in err
    assert "mkdir -p" in err and "out" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("emit", [[], ["--emit", "ir"]], ids=["onnx", "ir"])
def test_a_parent_that_is_a_file_is_e804_without_a_mkdir_hint(tmp_path, capsys, emit):
    (tmp_path / "file.csv").write_text("a,b\n")
    code, err = _compile([*emit, "-o", tmp_path / "file.csv" / "x.onnx"], capsys)
    assert code == 1 and "error[E804]" in err and "is a file, not a directory" in err
    assert "mkdir" not in err
    assert (tmp_path / "file.csv").read_text() == "a,b\n" and os.listdir(tmp_path) == ["file.csv"]


@pytest.mark.parametrize("emit", [[], ["--emit", "ir"]], ids=["onnx", "ir"])
def test_a_directory_as_output_is_e804(tmp_path, capsys, emit):
    (tmp_path / "d").mkdir()
    code, err = _compile([*emit, "-o", tmp_path / "d"], capsys)
    assert code == 1 and "error[E804]" in err and "it is a directory" in err
    assert os.listdir(tmp_path / "d") == []


@pytest.mark.parametrize("emit", [[], ["--emit", "ir"]], ids=["onnx", "ir"])
def test_a_symlink_stays_a_link_and_its_target_gets_the_output(tmp_path, capsys, emit):
    target = tmp_path / "real.out"
    target.write_text("old")
    link = tmp_path / "link.out"
    link.symlink_to(target)
    code, err = _compile([*emit, "-o", link], capsys)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sorted(os.listdir(tmp_path)) == ["link.out", "real.out"]
    if emit:
        assert '"nodes"' in target.read_text()
    else:
        onnx.checker.check_model(onnx.load(str(target)), full_check=True)


@pytest.mark.parametrize("emit", [[], ["--emit", "ir"]], ids=["onnx", "ir"])
def test_an_existing_file_keeps_its_mode(tmp_path, capsys, emit):
    out = tmp_path / "private.out"
    out.write_text("old")
    out.chmod(0o600)
    code, err = _compile([*emit, "-o", out], capsys)
    assert code == 0, err
    assert (out.stat().st_mode & 0o777) == 0o600 and out.read_bytes() != b"old"
    assert os.listdir(tmp_path) == ["private.out"]


@pytest.mark.parametrize("emit", [[], ["--emit", "ir"]], ids=["onnx", "ir"])
def test_a_fifo_is_refused_and_left_alone(tmp_path, capsys, emit):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, err = _compile([*emit, "-o", fifo], capsys)      # would block forever if it were opened
    assert code == 1 and "error[E804]" in err and "FIFO" in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.listdir(tmp_path) == ["pipe"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("emit", [[], ["--emit", "ir"]], ids=["onnx", "ir"])
def test_a_device_is_refused_and_left_alone(capsys, emit):
    before = os.stat("/dev/full")
    code, err = _compile([*emit, "-o", "/dev/full"], capsys)
    assert code == 1 and "error[E804]" in err and "character device" in err
    after = os.stat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_path_errors_in_a_real_process_have_no_traceback(tmp_path):
    (tmp_path / "file.csv").write_text("")
    os.mkfifo(tmp_path / "pipe")
    for out in (tmp_path / "file.csv" / "x.onnx", tmp_path / "missing" / "x.onnx", tmp_path / "pipe"):
        r = subprocess.run([sys.executable, "-m", "nnc.cli", "compile", str(XOR), "-o", str(out)],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert r.returncode == 1 and "E804" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["file.csv", "pipe"]
