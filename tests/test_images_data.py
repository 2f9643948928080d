"""Image folders: `images("folder", size=[H, W], color=...)` with images written by Pillow here --
PNG and JPEG of mixed sizes and suffix cases; the pixels equal Pillow's own conversion and bilinear
resize; a small CNN trains to a stated accuracy; `nnc predict` on a file and a folder writes label
names; every bad folder has a located error."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnc.cli import main
from nnc.data import load_inputs, load_source
from nnc.data.base import DataInfo
from nnc.errors import NncError

SUFFIXES = [".png", ".JPG", ".jpeg", ".PNG", ".bmp", ".gif"]


def stripes(kind: str, size: int, rng) -> Image.Image:
    """Vertical (class "vertical") or horizontal stripes, of a random colour and phase."""
    period = 6
    phase = int(rng.integers(period))
    lines = ((np.arange(size) + phase) % period) < 3
    mask = np.broadcast_to(lines[None, :] if kind == "vertical" else lines[:, None], (size, size))
    colour = rng.integers(120, 256, 3)
    arr = np.where(mask[..., None], colour, rng.integers(0, 40, 3)).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def make_folder(root: Path, per_class: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for kind in ("vertical", "horizontal"):
        (root / kind).mkdir(parents=True)
        for i in range(per_class):
            img = stripes(kind, int(rng.choice([12, 18, 30])), rng)
            suffix = SUFFIXES[i % len(SUFFIXES)]
            fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "gif": "GIF"}[suffix[1:].lower()]
            img.save(root / kind / f"{i:02d}{suffix}", format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    (root / "vertical" / "notes.txt").write_text("not an image")
    (root / "horizontal" / ".DS_Store").write_bytes(b"\0\0")
    return root


SPEC = """
model stripes {{
    input image: [1, 12, 12]
    conv2d(4, 3, padding=same) -> relu
    maxpool2d(2)
    flatten
    dense(2) -> softmax
}}

train {{
    data = images("{folder}", size=[12, 12], color=grayscale)
    loss = cross_entropy
    optimizer = adam(lr=0.02)
    epochs = {epochs}
    batch_size = 8
}}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("stripes")
    make_folder(d / "pics")
    spec = d / "stripes.nnspec"
    spec.write_text(SPEC.format(folder="pics", epochs=8))
    assert main(["train", str(spec), "--out", str(d / "run"), "--quiet"]) == 0
    return d, spec, d / "run"


def test_pixels_are_pillows_conversion_and_bilinear_resize(tmp_path):
    folder = make_folder(tmp_path / "pics", per_class=7)
    for color, mode in (("grayscale", "L"), ("rgb", "RGB")):
        ds = load_source("images", {"folder": "pics", "size": [10, 14], "color": color}, tmp_path)
        files = sorted((folder / "horizontal").glob("[0-9]*")) + sorted((folder / "vertical").glob("[0-9]*"))
        assert ds.x.shape == (14, 1 if mode == "L" else 3, 10, 14) and ds.x.dtype == np.float32
        for row, f in enumerate(files):
            ref = np.asarray(Image.open(f).convert(mode).resize((14, 10), Image.Resampling.BILINEAR),
                             dtype=np.float32) / 255
            ref = ref[None] if mode == "L" else ref.transpose(2, 0, 1)
            np.testing.assert_array_equal(ds.x[row], ref, err_msg=str(f))
        assert ds.labels == ["horizontal", "vertical"]                 # sorted folder names
        np.testing.assert_array_equal(ds.y, [0] * 7 + [1] * 7)
        assert ds.x.min() >= 0 and ds.x.max() <= 1
        assert any("ignoring 1 file that is not an image (.txt)" in n for n in ds.notes)


def test_a_small_cnn_learns_the_folder(trained, capsys):
    d, spec, run = trained
    capsys.readouterr()
    assert main(["evaluate", str(spec), "--weights", str(run / "weights.npz")]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("accuracy ")[1].split()[0])
    assert accuracy >= 0.9, out
    assert "horizontal" in out.split("confusion matrix")[1]
    info = json.loads((run / "data.json").read_text())
    assert info["kind"] == "images" and info["labels"] == ["horizontal", "vertical"]
    assert info["images"] == {"size": [12, 12], "color": "grayscale"}
    import onnx
    props = {p.key: p.value for p in onnx.load(str(run / "model.onnx")).metadata_props}
    assert json.loads(props["labels"]) == ["horizontal", "vertical"]


def test_predict_on_one_image_and_on_a_folder(trained, capsys, tmp_path):
    d, spec, run = trained
    import nnc
    model = nnc.load(spec)
    model.load_weights(run / "weights.npz")
    one = d / "pics" / "vertical" / "01.JPG"
    capsys.readouterr()
    assert main(["predict", str(spec), "--weights", str(run / "weights.npz"), "--input", str(one)]) == 0
    line = capsys.readouterr().out.strip()
    x = load_source("images", {"folder": "pics", "size": [12, 12], "color": "grayscale"}, d).x
    expected = model.predict(x[25:26])[0]                              # horizontal 0-23, then vertical 00, 01
    fields = line.split(",")
    assert fields[0] == str(one) and fields[-1] in ("horizontal", "vertical")
    np.testing.assert_allclose([float(v) for v in fields[1:3]], expected, rtol=1e-5)
    assert main(["predict", str(spec), "--weights", str(run / "weights.npz"), "--input", str(d / "pics"),
                 "-o", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
    assert list(rows[0]) == ["file", "out_0", "out_1", "label"]
    assert [r["file"] for r in rows[:2]] == ["horizontal/00.png", "horizontal/01.JPG"] and len(rows) == 48
    probs = np.array([[float(r["out_0"]), float(r["out_1"])] for r in rows])
    np.testing.assert_allclose(probs, model.predict(x), rtol=1e-5)
    assert [r["label"] for r in rows] == model.predict_labels(x)


def test_evaluate_on_another_folder_reuses_size_color_and_labels(trained, tmp_path, capsys):
    d, spec, run = trained
    rng = np.random.default_rng(9)
    (tmp_path / "held" / "vertical").mkdir(parents=True)               # only one of the classes
    for i in range(4):
        stripes("vertical", 20, rng).save(tmp_path / "held" / "vertical" / f"{i}.png")
    capsys.readouterr()
    assert main(["evaluate", str(spec), "--weights", str(run / "weights.npz"), "--data",
                 f'images("{tmp_path / "held"}")']) == 0
    out = capsys.readouterr().out
    assert "(4 examples)" in out
    info = DataInfo.from_dict(json.loads((run / "data.json").read_text()), "data.json")
    ds = load_source("images", {"folder": str(tmp_path / "held")}, tmp_path, info=info)
    np.testing.assert_array_equal(ds.y, [1, 1, 1, 1])                  # the training id of "vertical"
    with pytest.raises(NncError) as err:
        load_source("images", {"folder": str(tmp_path / "held"), "size": [16, 16]}, tmp_path, info=info)
    assert err.value.diagnostics[0].code == "E715" and "size=[12, 12]" in err.value.diagnostics[0].message
    (tmp_path / "held" / "diagonal").mkdir()
    stripes("vertical", 20, rng).save(tmp_path / "held" / "diagonal" / "0.png")
    with pytest.raises(NncError) as err:
        load_source("images", {"folder": str(tmp_path / "held")}, tmp_path, info=info)
    d0 = err.value.diagnostics[0]
    assert d0.code == "E735" and '"diagonal"' in d0.message and d0.path.endswith("diagonal")


def _train_error(tmp_path, capsys, folder: str) -> str:
    spec = tmp_path / "s.nnspec"
    spec.write_text(SPEC.format(folder=folder, epochs=1))
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_bad_folders_have_located_errors(tmp_path, capsys):
    rng = np.random.default_rng(2)
    # an empty class folder
    (tmp_path / "a" / "cat").mkdir(parents=True)
    (tmp_path / "a" / "dog").mkdir()
    stripes("vertical", 12, rng).save(tmp_path / "a" / "cat" / "1.png")
    (tmp_path / "a" / "dog" / "readme.md").write_text("x")
    err = _train_error(tmp_path, capsys, "a")
    assert "error[E711]" in err and f"{tmp_path / 'a' / 'dog'}: error" in err and "1 other file" in err
    # a truncated image and a file that is no image at all: both reported, each at its path
    (tmp_path / "b" / "cat").mkdir(parents=True)
    (tmp_path / "b" / "dog").mkdir()
    stripes("vertical", 12, rng).save(tmp_path / "b" / "cat" / "1.png")
    noisy = Image.fromarray(rng.integers(0, 256, (64, 64, 3)).astype(np.uint8))
    buf = io.BytesIO()
    noisy.save(buf, format="PNG")
    (tmp_path / "b" / "dog" / "cut.png").write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    (tmp_path / "b" / "dog" / "fake.jpg").write_text("hello")
    err = _train_error(tmp_path, capsys, "b")
    assert f"{tmp_path / 'b' / 'dog' / 'cut.png'}: error[E712]" in err and "truncated" in err
    assert f"{tmp_path / 'b' / 'dog' / 'fake.jpg'}: error[E712]" in err
    # images straight in the folder, no class subfolders
    (tmp_path / "c").mkdir()
    stripes("vertical", 12, rng).save(tmp_path / "c" / "1.png")
    err = _train_error(tmp_path, capsys, "c")
    assert "error[E710]" in err and "no class subfolders (it holds 1 image directly)" in err
    # no such folder: at the source in the spec; a file where the folder should be
    err = _train_error(tmp_path, capsys, "nowhere")
    assert "error[E702]" in err and "s.nnspec:11:12" in err and "image folder not found" in err
    err = _train_error(tmp_path, capsys, "c/1.png")
    assert "error[E702]" in err and "is a file, not a folder" in err


def test_without_pillow_the_error_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    make_folder(tmp_path / "pics", per_class=2)
    monkeypatch.setitem(sys.modules, "PIL", None)                     # `import PIL` now fails
    with pytest.raises(NncError) as err:
        load_source("images", {"folder": "pics", "size": [8, 8]}, tmp_path)
    d = err.value.diagnostics[0]
    assert d.code == "E713" and "pip install 'nnc[images]'" in d.hint
    with pytest.raises(NncError) as err:
        load_inputs(str(tmp_path / "pics" / "vertical" / "00.png"), image_options={"size": [8, 8], "color": "rgb"})
    assert err.value.diagnostics[0].code == "E713"


def test_check_knows_the_shape_an_image_folder_gives(tmp_path, capsys):
    spec = tmp_path / "s.nnspec"
    spec.write_text(SPEC.format(folder="nowhere", epochs=1).replace("color=grayscale", "color=rgb"))
    assert main(["check", str(spec)]) == 1
    out = capsys.readouterr().out
    assert "error[E605]" in out and "[3, 12, 12]" in out
