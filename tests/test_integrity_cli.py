"""What nnc promises about the files and streams it writes (contract 6.3), as a user meets it:

* a closed or full standard output is never success by accident; ``nnc train`` whose console goes
  away still completes its run;
* writes go through symbolic links, keep permissions, refuse directories, FIFOs and devices, and
  say what is wrong with a missing or non-directory parent;
* ``nnc train`` never mixes two runs in one directory: default run folders are numbered, an
  ``--out`` that holds a run is refused unless ``--resume`` or ``--overwrite``;
* the memory check (E760) counts exactly and uses the batch that will really be used;
* the progress bar fits the terminal;
* weights files: integer arrays are refused, and "did you mean" only suggests a plausible key.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run
from nnc.errors import NncError

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
IRIS = SPECS / "iris_mlp.nnspec"

TINY = """
model tiny {
    input x: [4]
    dense(8) -> relu
    dense(3) -> softmax
}
train {
    data = dataset("iris")
    loss = cross_entropy
    epochs = 2
    batch_size = 50
}
"""


def nnc(*argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnc.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=300, cwd=kw.pop("cwd", ROOT), **kw)


def write_tiny(tmp_path: Path, text: str = TINY) -> Path:
    spec = tmp_path / "tiny.nnspec"
    spec.write_text(text)
    return spec


def big_spec(tmp_path: Path, layers: int = 600) -> Path:
    spec = tmp_path / "big.nnspec"
    spec.write_text("model big {\n    input x: [8]\n" + "    dense(8) -> relu\n" * layers + "}\n")
    return spec


# ----------------------------------------------------------------------------------------------
# closed and full output streams

def test_a_closed_pipe_is_not_success(tmp_path):
    spec = big_spec(tmp_path)               # its IR is far larger than a pipe's buffer
    proc = subprocess.Popen([sys.executable, "-m", "nnc.cli", "compile", str(spec), "--emit", "ir"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()                     # what `| head -c 10` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1
    assert "cannot write to standard output" in err and "Traceback" not in err, err


def test_check_with_errors_fails_through_head():
    res = subprocess.run(f"{sys.executable} -m nnc.cli check tests/errors | head -1; exit ${{PIPESTATUS[0]}}",
                         shell=True, executable="/bin/bash", cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and len(res.stdout.splitlines()) == 1
    assert "Traceback" not in res.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_a_full_disk_on_stdout_is_an_error_not_a_bug():
    with open("/dev/full", "w") as full:
        res = subprocess.run([sys.executable, "-m", "nnc.cli", "summary", str(IRIS)], stdout=full,
                             stderr=subprocess.PIPE, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 1
    assert "No space left on device" in res.stderr
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr


def test_train_completes_its_run_when_its_console_goes_away(tmp_path):
    spec = write_tiny(tmp_path)
    read, write = os.pipe()
    os.close(read)                          # every write to stdout or stderr now fails with EPIPE
    try:
        res = subprocess.run([sys.executable, "-m", "nnc.cli", "train", str(spec), "--out", str(tmp_path / "run")],
                             stdout=write, stderr=write, timeout=300, cwd=ROOT)
    finally:
        os.close(write)
    assert res.returncode == 0
    for f in ("weights.npz", "checkpoint.npz", "history.csv", "model.onnx"):
        assert (tmp_path / "run" / f).is_file(), f


# ----------------------------------------------------------------------------------------------
# writes: links, permissions, non-regular targets, parents

@pytest.fixture
def trained(tmp_path, capsys):
    spec = write_tiny(tmp_path)
    code, _, err = run(["train", spec, "--out", tmp_path / "run", "--quiet"], capsys)
    assert code == 0, err
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32))
    return spec, tmp_path / "run" / "weights.npz", x


def test_predict_writes_through_a_symlink(trained, tmp_path, capsys):
    spec, w, x = trained
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    code, _, err = run(["predict", spec, "--weights", w, "--input", x, "-o", link], capsys)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text().startswith("out_0,") and len(real.read_text().splitlines()) == 6


def test_predict_keeps_the_permissions_of_the_file_it_replaces(trained, tmp_path, capsys):
    spec, w, x = trained
    out = tmp_path / "p.npy"
    out.write_bytes(b"")
    out.chmod(0o600)
    code, _, err = run(["predict", spec, "--weights", w, "--input", x, "-o", out], capsys)
    assert code == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert np.load(out).shape == (5, 3)


def test_predict_refuses_a_fifo_and_leaves_it(trained, tmp_path, capsys):
    spec, w, x = trained
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    code, _, err = run(["predict", spec, "--weights", w, "--input", x, "-o", fifo], capsys)
    assert code == 1 and "E765" in err and "FIFO" in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_compile_never_replaces_a_device(tmp_path, capsys):
    before = os.lstat("/dev/full")
    code, _, err = run(["compile", IRIS, "--emit", "ir", "-o", "/dev/full"], capsys)
    assert code == 1 and "character device" in err
    after = os.lstat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


@pytest.mark.parametrize("where, words, not_words", [
    ("nodir/p.csv", ["does not exist", "mkdir -p"], []),
    ("file.csv/p.csv", ["is a file, not a directory"], ["mkdir"]),
])
def test_predict_output_parents(trained, tmp_path, capsys, where, words, not_words):
    spec, w, x = trained
    (tmp_path / "file.csv").write_text("a file\n")
    code, _, err = run(["predict", spec, "--weights", w, "--input", x, "-o", tmp_path / where], capsys)
    assert code == 1 and "E765" in err
    for word in words:
        assert word in err
    for word in not_words:
        assert word not in err


def test_fmt_formats_the_file_a_link_points_to_and_keeps_its_mode(tmp_path, capsys):
    real = tmp_path / "real.nnspec"
    real.write_text("model m {\ninput x: [2]\n  dense(1)\n}\n")
    real.chmod(0o600)
    link = tmp_path / "link.nnspec"
    link.symlink_to(real)
    code, _, err = run(["fmt", link], capsys)
    assert code == 0, err
    assert link.is_symlink()
    assert real.read_text() == "model m {\n    input x: [2]\n    dense(1)\n}\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600


# ----------------------------------------------------------------------------------------------
# run directories

def test_default_run_folders_are_numbered(tmp_path, capsys, monkeypatch):
    spec = write_tiny(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run(["train", spec, "--quiet"], capsys)[0] == 0
    first = (tmp_path / "runs" / "tiny" / "weights.npz").read_bytes()
    code, out, _ = run(["train", spec, "--quiet", "--set", "seed=1"], capsys)
    assert code == 0 and "runs/tiny-2" in out
    assert (tmp_path / "runs" / "tiny" / "weights.npz").read_bytes() == first     # the first run is intact
    assert (tmp_path / "runs" / "tiny-2" / "model.onnx").is_file()
    assert run(["train", spec, "--quiet"], capsys)[0] == 0
    assert (tmp_path / "runs" / "tiny-3" / "weights.npz").is_file()


def test_an_out_that_holds_a_run_is_refused(tmp_path, capsys):
    spec = write_tiny(tmp_path)
    out = tmp_path / "run"
    assert run(["train", spec, "--out", out, "--quiet"], capsys)[0] == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    code, _, err = run(["train", spec, "--out", out, "--quiet", "--set", "seed=3"], capsys)
    assert code == 1 and "E767" in err and "--resume" in err and "--overwrite" in err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


def test_an_interrupted_first_epoch_counts_as_a_run_only_once_it_wrote_something(tmp_path, capsys):
    spec = write_tiny(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")    # a folder with the user's own files is not a run
    assert run(["train", spec, "--out", out, "--quiet"], capsys)[0] == 0


def test_overwrite_removes_only_nncs_files(tmp_path, capsys):
    spec = write_tiny(tmp_path)
    out = tmp_path / "run"
    assert run(["train", spec, "--out", out, "--quiet"], capsys)[0] == 0
    (out / "notes.txt").write_text("mine\n")
    (out / "labels.json").write_text('{"labels": ["stale"]}\n')   # a file of an older nnc
    old = (out / "weights.npz").read_bytes()
    code, _, err = run(["train", spec, "--out", out, "--overwrite", "--set", "seed=5"], capsys)
    assert code == 0, err
    assert "removed" in err and "labels.json" in err
    assert (out / "notes.txt").read_text() == "mine\n"
    assert not (out / "labels.json").exists() or "stale" not in (out / "labels.json").read_text()
    assert (out / "weights.npz").read_bytes() != old


def test_overwrite_and_resume_exclude_each_other(tmp_path, capsys):
    spec = write_tiny(tmp_path)
    out = tmp_path / "run"
    assert run(["train", spec, "--out", out, "--quiet"], capsys)[0] == 0
    code, _, err = run(["train", spec, "--resume", out, "--overwrite"], capsys)
    assert code == 2 and "--overwrite" in err


def test_a_continued_run_drops_its_stale_export_until_it_writes_a_new_one(tmp_path, capsys, monkeypatch):
    spec = write_tiny(tmp_path)
    out = tmp_path / "run"
    assert run(["train", spec, "--out", out, "--quiet"], capsys)[0] == 0
    import nnc.commands.train as T

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(T.Trainer, "train_epoch", interrupted)
    code, _, err = run(["train", spec, "--resume", out, "--set", "epochs=4"], capsys)
    assert code == 1 and "E766" in err
    assert not (out / "model.onnx").exists(), "model.onnx of epoch 2 beside weights of a later epoch"


# ----------------------------------------------------------------------------------------------
# the memory check

def test_a_batch_larger_than_the_data_is_not_counted(tmp_path, capsys):
    spec = write_tiny(tmp_path, TINY.replace("batch_size = 50", "batch_size = 100000000"))
    code, _, err = run(["train", spec, "--out", tmp_path / "run", "--quiet"], capsys)
    assert code == 0, err


def test_the_memory_check_counts_huge_models_exactly():
    from nnc.compiler.ir import Program
    from nnc.compiler.lower import compile_source
    from nnc.runtime.graph import Graph, check_memory
    program = compile_source("model huge {\n input x: [4]\n dense(10000000000) -> relu\n dense(10000000000)\n}\n",
                             "huge.nnspec")
    assert isinstance(program, Program)
    with pytest.raises(NncError) as info:
        check_memory(Graph(program.model, "float32"), 32)
    d = info.value.diagnostics[0]
    assert d.code == "E760"
    assert f"{program.model.params:,} parameters" in d.message    # the summary's count, not an int64 overflow


# ----------------------------------------------------------------------------------------------
# the progress bar

@pytest.mark.parametrize("columns", [200, 80, 50, 40, 30, 20, 10, 2])
def test_the_progress_bar_never_wraps(columns):
    from nnc.progress import Progress
    p = Progress()
    p.epoch, p.epochs = 12, 150
    for b in (1, 17, 450):
        line = p.bar_line(b, 450, 1234.5678, 123.4, columns)
        assert 0 < len(line) <= max(columns - 1, 1)
    assert "[" in p.bar_line(17, 450, 0.5, 1.0, 80)       # a bar where there is room for one


# ----------------------------------------------------------------------------------------------
# weights files

def _expected(spec_text: str):
    from nnc.compiler.lower import compile_source
    from nnc.runtime.graph import Graph
    return Graph(compile_source(spec_text, "m.nnspec").model, "float32").weight_shapes()


def test_integer_weights_are_refused():
    from nnc.runtime.weights import validate_weights
    expected = _expected(TINY)
    arrays = {k: np.zeros(s, dtype=np.int64) for k, (s, _) in expected.items()}
    with pytest.raises(NncError) as info:
        validate_weights(arrays, expected, "w.npz", np.float32)
    assert {d.code for d in info.value.diagnostics} == {"E754"}
    assert "int64" in info.value.diagnostics[0].message


def test_weights_of_another_kind_of_layer_are_not_suggested():
    from nnc.runtime.weights import validate_weights
    expected = _expected(TINY)
    arrays = {"conv2d_2.weight": np.zeros((8, 4, 3, 3), np.float32), "dense_1.bias": np.zeros(8, np.float32),
              "dense_2.weight": np.zeros((3, 8), np.float32), "dense_2.bias": np.zeros(3, np.float32)}
    with pytest.raises(NncError) as info:
        validate_weights(arrays, expected, "w.npz", np.float32)
    assert not any("did you mean" in (d.hint or "") for d in info.value.diagnostics)
    # a renamed layer of the same shape is worth suggesting
    arrays = {k.replace("dense_1", "hidden"): np.zeros(s, np.float32) for k, (s, _) in expected.items()}
    with pytest.raises(NncError) as info:
        validate_weights(arrays, expected, "w.npz", np.float32)
    missing = [d for d in info.value.diagnostics if d.code == "E751"]
    assert missing and all("hidden." in (d.hint or "") and "renamed" in d.hint for d in missing)


def test_fmt_on_a_folder_without_specs_fails(tmp_path, capsys):
    code, _, err = run(["fmt", "--check", tmp_path], capsys)
    assert code == 1 and "no .nnspec files" in err


def test_the_api_says_compiler_warnings_as_python_warnings(tmp_path):
    import nnc
    spec = write_tiny(tmp_path, TINY.replace("dense(3) -> softmax", "dense(3) -> sigmoid"))
    with pytest.warns(nnc.api.NncWarning, match="W601"):
        nnc.load(spec)


def test_the_exports_carry_the_label_map(trained, tmp_path, capsys):
    import json

    import onnx
    spec, w, _ = trained
    names = ["setosa", "versicolor", "virginica"]

    def labels_of(path):
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        return json.loads(props["labels"])
    assert labels_of(w.parent / "model.onnx") == names                     # nnc train
    code, _, err = run(["compile", spec, "--weights", w, "-o", tmp_path / "m.onnx"], capsys)
    assert code == 0, err
    assert labels_of(tmp_path / "m.onnx") == names                          # nnc compile --weights of a run


def test_token_ids_are_checked_before_training_through_identity(tmp_path):
    import nnc
    spec = write_tiny(tmp_path, """
model seq {
    input tokens: int64[6]
    identity
    embedding(10, 4)
    flatten
    dense(2)
}
train {
    loss = cross_entropy
    epochs = 1
}
""")
    model = nnc.load(spec)
    x = np.full((8, 6), 3, dtype=np.int64)
    x[5, 2] = 12                                           # outside the embedding's [0, 10)
    with pytest.raises(NncError) as info:
        model.fit(x, np.zeros(8, dtype=np.int64))
    d = info.value.diagnostics[0]
    assert d.code == "E731" and "example 5" in d.message and "embedding_1" in d.message
