"""``nnc plot`` and the ``curves.png`` of ``nnc train``: the panels a history gives (loss and each
metric, training and validation, the learning rate), the pictures (PNG by magic bytes, header,
pixel size and content; SVG parsed), errors (no history, a malformed one, no matplotlib), and that a
failing plot never fails a run, nor does matplotlib load for ``nnc check`` or before training.
"""
from __future__ import annotations

import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cli_helpers import run

matplotlib = pytest.importorskip("matplotlib", reason="the plotting extra is in the test extra: pip install -e '.[test]'")
from nnc.commands.plot import panels, read_history  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A short real run with validation data and a changing learning rate."""
    out = tmp_path_factory.mktemp("runs") / "iris"
    from nnc.cli import main
    code = main(["train", str(ROOT / "specs" / "iris_mlp.nnspec"), "--out", str(out), "--quiet",
                 "--set", "epochs=4", "--set", "schedule=step(2, gamma=0.5)", "--set", "metrics=[accuracy, mae]"])
    assert code == 0
    return out


def test_train_writes_curves_png(run_dir: Path):
    width, height = png_size(run_dir / "curves.png")
    # loss, accuracy, mae and the learning rate: 3 panels a row, 2 rows, 100 dpi
    assert (width, height) == (1260, 645)
    assert (run_dir / "curves.png").stat().st_size > 20_000


def test_panels_pair_training_and_validation(run_dir: Path):
    columns = read_history(run_dir / "history.csv")
    assert list(columns) == ["epoch", "loss", "accuracy", "mae", "val_loss", "val_accuracy", "val_mae", "lr",
                             "seconds"]
    assert columns["epoch"] == [1.0, 2.0, 3.0, 4.0] and columns["lr"] == [0.01, 0.01, 0.005, 0.005]
    assert panels(columns) == [("loss", ["loss", "val_loss"]), ("accuracy", ["accuracy", "val_accuracy"]),
                               ("mae", ["mae", "val_mae"]), ("learning rate", ["lr"])]
    assert panels({"epoch": [1], "loss": [1], "lr": [1], "seconds": [1]}) == [("loss", ["loss"]),
                                                                                ("learning rate", ["lr"])]


def test_the_picture_holds_the_curves(run_dir: Path, tmp_path: Path, capsys):
    code, _, err = run(["plot", run_dir, "-o", tmp_path / "c.svg"], capsys)
    assert code == 0 and "4 epochs" in err
    ET.parse(tmp_path / "c.svg")  # well-formed
    comments = (tmp_path / "c.svg").read_text(encoding="utf-8")
    for title in ("loss", "accuracy", "mae", "learning rate", "validation", "training"):
        assert f"<!-- {title} -->" in comments  # matplotlib writes each text as a comment before its glyphs
    # one line per series: loss, val_loss, accuracy, val_accuracy, mae, val_mae, lr
    assert comments.count('id="line2d_') >= 7
    code, _, _ = run(["plot", run_dir], capsys)  # the default: RUN_DIR/curves.png, replaced
    assert code == 0 and png_size(run_dir / "curves.png")[0] == 1260


def test_plot_errors(run_dir: Path, tmp_path: Path, capsys):
    code, _, err = run(["plot", tmp_path / "nope"], capsys)
    assert code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(["plot", empty], capsys)
    assert code == 1 and "error[E905]" in err and "has no history.csv" in err
    (empty / "history.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    code, _, err = run(["plot", empty], capsys)
    assert code == 1 and "error[E905]" in err and "not a training history" in err
    (empty / "history.csv").write_text("epoch,loss,lr,seconds\n1,0.5,0.1\n", encoding="utf-8")
    code, _, err = run(["plot", empty], capsys)
    assert code == 1 and "line 2 has 3 values for 4 columns" in err
    code, _, err = run(["plot", run_dir, "-o", tmp_path / "c.jpg"], capsys)
    assert code == 2 and ".png" in err
    code, _, err = run(["plot", run_dir, "-o", tmp_path / "no" / "c.png"], capsys)
    assert code == 1 and "error[E903]" in err


def test_without_matplotlib(run_dir: Path, tmp_path: Path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    code, _, err = run(["plot", run_dir, "-o", tmp_path / "c.png"], capsys)
    assert code == 1 and "error[E904]" in err and "pip install 'nnc[plot]'" in err
    out = tmp_path / "run"
    code, _, err = run(["train", ROOT / "specs" / "xor_mlp.nnspec", "--out", out, "--quiet", "--set", "epochs=2"],
                       capsys)
    assert code == 0 and not (out / "curves.png").exists() and "curves" not in err


def test_a_failing_plot_never_fails_the_run(tmp_path: Path, capsys, monkeypatch):
    import nnc.commands.plot as plot

    def broken(*a, **k):
        raise RuntimeError("no fonts today")
    monkeypatch.setattr(plot, "draw", broken)
    out = tmp_path / "run"
    code, stdout, err = run(["train", ROOT / "specs" / "xor_mlp.nnspec", "--out", out, "--quiet",
                             "--set", "epochs=2"], capsys)
    assert code == 0 and (out / "weights.npz").exists() and not (out / "curves.png").exists()
    assert "warning: curves.png not written: RuntimeError: no fonts today" in err
    assert "xor_mlp: 2 epochs" in stdout


def test_matplotlib_is_not_loaded_by_check_or_before_training():
    code = ("import sys\nfrom nnc.cli import main\nrc = main(['check', 'specs'])\n"
            "import nnc.commands.train, nnc.commands.plot\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib loaded'\nsys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
