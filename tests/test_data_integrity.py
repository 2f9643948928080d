"""Data a user brings, read the way the model was trained on it (contract 5.3): one label map from
the training source, CSV features by column name, the run's data.json, and the Python API's
checks on x and y. Each test is a regression test for a problem seen by using the verbs."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

import nnc
from cli_helpers import run
from nnc.errors import NncError
from nnc import data as D

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPEC = """\
model flowers {
    input features: [4]
    dense(16) -> relu
    dense(3) -> softmax
}
train {
    data       = csv("train.csv", target="species")
    validation = 0.2
    loss       = cross_entropy
    optimizer  = adam(lr=0.02)
    epochs     = 40
    batch_size = 16
}
"""


def iris():
    return D.load_source("dataset", {"name": "iris"}, ROOT)


def write_csv(path: Path, rows, columns=COLUMNS, *, target: str | None = "species", extra=None) -> Path:
    """Iris rows ``rows`` as a CSV with ``columns`` (in that order) and string labels."""
    ds = iris()
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(columns) + ([target] if target else []))
        for i in rows:
            values = dict(zip(COLUMNS, (f"{v:.1f}" for v in ds.x[i])), **(extra or {}))
            w.writerow([values[c] for c in columns] + ([ds.labels[ds.y[i]]] if target else []))
    return path


def fails(argv, capsys) -> str:
    """The diagnostics (stdout and stderr) of ``nnc ARGV``, which must exit with 1."""
    code, out, err = run(argv, capsys)
    assert code == 1, out + err
    return out + err


@pytest.fixture(scope="module")
def flowers(tmp_path_factory):
    """A run trained on a CSV of string labels: (folder, spec, run directory)."""
    d = tmp_path_factory.mktemp("flowers")
    perm = np.random.default_rng(0).permutation(150)
    write_csv(d / "train.csv", perm[:120])
    (d / "flowers.nnspec").write_text(SPEC)
    from nnc.cli import main
    assert main(["train", str(d / "flowers.nnspec"), "--out", str(d / "run"), "--quiet"]) == 0
    return d, d / "flowers.nnspec", d / "run", perm[120:]


def predict_rows(capsys, spec, run_dir, src, *extra) -> tuple[np.ndarray, list[str], str]:
    code, out, err = run(["predict", spec, "--weights", run_dir / "weights.npz", "--input", src, *extra], capsys)
    assert code == 0, out + err
    rows = list(csv.reader(io.StringIO(out)))
    return np.array([[float(v) for v in r[:-1]] for r in rows]), [r[-1] for r in rows], err


# ----------------------------------------------------------------------------------------------
# 1. one label map, from the training source

def test_data_json_records_the_training_source(flowers):
    d, _, run_dir, _ = flowers
    info = json.loads((run_dir / "data.json").read_text())
    assert info == {"format": 1, "kind": "csv", "source": str(d / "train.csv"), "features": COLUMNS,
                    "target": "species", "labels": ["setosa", "versicolor", "virginica"], "text": None}
    assert not (run_dir / "labels.json").exists()


def test_data_info_of_a_split_names_the_source_not_the_part():
    train, _ = D.split_validation(iris(), 0.2, 0)
    info = D.DataInfo.of(train)
    assert (info.kind, info.source, info.features, info.labels) == (
        "dataset", 'dataset("iris")', None, ["setosa", "versicolor", "virginica"])


def test_evaluate_on_a_file_holding_only_some_classes_keeps_the_training_ids(flowers, capsys):
    d, spec, run_dir, held_out = flowers
    ds = iris()
    some = [i for i in held_out if ds.y[i] > 0]               # versicolor and virginica only
    write_csv(d / "some.csv", some)
    code, out, err = run(["evaluate", spec, "--weights", run_dir / "weights.npz", "--data",
                          f'csv("{d / "some.csv"}", target="species")'], capsys)
    assert code == 0, out + err
    accuracy = float(out.split("accuracy ")[1].split(",")[0].split()[0])
    probs, labels, _ = predict_rows(capsys, spec, run_dir, write_csv(d / "some_x.csv", some, target=None))
    truth = [ds.labels[ds.y[i]] for i in some]
    # per-file ids would have made versicolor 0 and virginica 1: accuracy near 0 instead of this
    assert accuracy == pytest.approx(np.mean([a == b for a, b in zip(labels, truth)]), abs=1e-4)
    assert accuracy > 0.8


def test_a_validation_source_with_some_classes_uses_the_training_map(tmp_path):
    ds = iris()
    write_csv(tmp_path / "train.csv", range(150))
    write_csv(tmp_path / "val.csv", [149, 100])                   # virginica only
    train = D.load_source("csv", {"path": "train.csv", "target": "species"}, tmp_path)
    val = D.load_source("csv", {"path": "val.csv", "target": "species"}, tmp_path, info=D.DataInfo.of(train))
    assert val.y.tolist() == [2, 2] and val.labels == train.labels
    assert D.load_source("csv", {"path": "val.csv", "target": "species"}, tmp_path).y.tolist() == [0, 0]
    assert ds.labels == train.labels


def test_an_unknown_label_names_it_with_file_and_line(flowers, capsys):
    d, spec, run_dir, held_out = flowers
    write_csv(d / "typo.csv", held_out[:5])
    text = (d / "typo.csv").read_text().splitlines()
    text[3] = text[3].rsplit(",", 1)[0] + ",virginca"
    (d / "typo.csv").write_text("\n".join(text) + "\n")
    out = fails(["evaluate", spec, "--weights", run_dir / "weights.npz", "--data",
                          f'csv("{d / "typo.csv"}", target="species")'], capsys)
    assert f"{d / 'typo.csv'}:4:" in out and "error[E735]" in out
    assert 'label "virginca"' in out and 'did you mean "virginica"' in out


def test_npz_labels_use_the_map_and_unknown_ones_are_named(tmp_path):
    info = D.DataInfo("npz", "t.npz", labels=["cat", "dog", "fox"])
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.array(["fox", "fox", "dog"]))
    ds = D.load_source("npz", {"path": "d.npz"}, tmp_path, info=info)
    assert ds.y.tolist() == [2, 2, 1] and ds.labels == ["cat", "dog", "fox"]
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.array(["fox", "cow", "dog"]))
    with pytest.raises(NncError) as e:
        D.load_source("npz", {"path": "d.npz"}, tmp_path, info=info)
    d = e.value.diagnostics[0]
    assert d.code == "E735" and '"cow"' in d.message and "row 2" in d.message and d.path.endswith("d.npz")


def test_labels_where_the_model_was_trained_on_numbers_are_refused(tmp_path):
    (tmp_path / "d.csv").write_text("a,y\n1,cat\n2,dog\n")
    with pytest.raises(NncError) as e:
        D.load_source("csv", {"path": "d.csv", "target": "y"}, tmp_path, info=D.DataInfo("csv", "t.csv", ["a"], "y"))
    assert e.value.diagnostics[0].code == "E735" and "numeric" in e.value.diagnostics[0].message


def test_binary_cross_entropy_on_three_labels_names_the_labels_not_target_2(tmp_path, capsys):
    write_csv(tmp_path / "train.csv", range(0, 150, 5))
    (tmp_path / "b.nnspec").write_text(SPEC.replace("dense(3) -> softmax", "dense(1) -> sigmoid")
                                       .replace("cross_entropy", "binary_cross_entropy"))
    out = fails(["train", tmp_path / "b.nnspec", "--out", tmp_path / "run"], capsys)
    assert "error[E740]" in out
    assert '"setosa", "versicolor", "virginica"' in out and "target 2" not in out


def test_more_labels_than_output_units_names_the_label(tmp_path, capsys):
    write_csv(tmp_path / "train.csv", range(0, 150, 5))
    (tmp_path / "t.nnspec").write_text(SPEC.replace("dense(3)", "dense(2)"))
    out = fails(["train", tmp_path / "t.nnspec", "--out", tmp_path / "run"], capsys)
    assert "error[E740]" in out and 'label "virginica" (class id 2)' in out


# ----------------------------------------------------------------------------------------------
# 2. CSV features by name

def test_predict_matches_columns_by_name(flowers, capsys):
    d, spec, run_dir, held_out = flowers
    base, labels, _ = predict_rows(capsys, spec, run_dir, write_csv(d / "p.csv", held_out, target=None))
    rev, rev_labels, _ = predict_rows(capsys, spec, run_dir, write_csv(d / "rev.csv", held_out, COLUMNS[::-1],
                                                                       target=None))
    np.testing.assert_array_equal(rev, base)
    assert rev_labels == labels
    extra, _, err = predict_rows(capsys, spec, run_dir, write_csv(d / "extra.csv", held_out, ["id"] + COLUMNS,
                                                                  target=None, extra={"id": "7"}))
    np.testing.assert_array_equal(extra, base)
    assert 'ignoring column "id"' in err


def test_predict_with_a_renamed_column_is_an_error_naming_it(flowers, capsys):
    d, spec, run_dir, held_out = flowers
    src = write_csv(d / "renamed.csv", held_out, COLUMNS[:3] + ["petal_widht"], target=None,
                    extra={"petal_widht": "0.2"})
    out = fails(["predict", spec, "--weights", run_dir / "weights.npz", "--input", src], capsys)
    assert "error[E736]" in out and 'no column "petal_width"' in out
    assert 'did you mean "petal_widht"' in out


def test_evaluate_matches_columns_by_name(flowers, capsys):
    d, spec, run_dir, held_out = flowers
    argv = ["evaluate", spec, "--weights", run_dir / "weights.npz", "--data"]
    a = run(argv + [f'csv("{write_csv(d / "e1.csv", held_out)}", target="species")'], capsys)
    b = run(argv + [f'csv("{write_csv(d / "e2.csv", held_out, COLUMNS[::-1])}", target="species")'], capsys)
    # the bare path: the target is the training target column, not "the last one"
    c = run(argv + [str(write_csv(d / "e3.csv", held_out, ["species"] + COLUMNS[:0] + COLUMNS, target=None,
                                  extra={"species": "setosa"}))], capsys)
    assert a[0] == b[0] == 0 and a[1].split(":", 1)[1] == b[1].split(":", 1)[1].replace("e2.csv", "e1.csv")
    assert c[0] == 0, c


def test_without_data_json_columns_are_positional_with_a_note(flowers, capsys, tmp_path):
    d, spec, run_dir, held_out = flowers
    (tmp_path / "weights.npz").write_bytes((run_dir / "weights.npz").read_bytes())
    src = write_csv(d / "pos.csv", held_out[:3], ["a", "b", "c", "d"], target=None,
                    extra=dict(zip("abcd", ["5.1", "3.5", "1.4", "0.2"])))
    code, out, err = run(["predict", spec, "--weights", tmp_path / "weights.npz", "--input", src], capsys)
    assert code == 0 and "taken by position" in err
    assert len(next(csv.reader(io.StringIO(out)))) == 3          # no label map, no label column


# ----------------------------------------------------------------------------------------------
# 3. data.json and the label column of predict

def test_predict_outputs_carry_the_label_only_where_the_contract_says(flowers, capsys):
    d, spec, run_dir, held_out = flowers
    src = write_csv(d / "in.csv", held_out[:6], target=None)
    probs, labels, _ = predict_rows(capsys, spec, run_dir, src)
    assert labels == [["setosa", "versicolor", "virginica"][i] for i in probs.argmax(1)]
    code, _, err = run(["predict", spec, "--weights", run_dir / "weights.npz", "--input", src,
                        "-o", d / "o.csv"], capsys)
    lines = (d / "o.csv").read_text().splitlines()
    assert code == 0 and lines[0] == "out_0,out_1,out_2,label" and lines[1].split(",")[-1] == labels[0]
    assert run(["predict", spec, "--weights", run_dir / "weights.npz", "--input", src, "-o", d / "o.npy"],
               capsys)[0] == 0
    assert np.load(d / "o.npy").shape == (6, 3)                   # probabilities only


def test_data_json_is_written_for_every_run_even_without_labels(tmp_path, capsys):
    x = iris().x
    np.savez(tmp_path / "a.npz", x=x, y=x[:, :1] * 2)
    spec = tmp_path / "r.nnspec"
    spec.write_text("model r {\n    input x: [4]\n    dense(1)\n}\ntrain {\n    data = npz(\"a.npz\")\n"
                    "    loss = mse\n    epochs = 1\n}\n")
    assert run(["train", spec, "--out", tmp_path / "run", "--quiet"], capsys)[0] == 0
    info = json.loads((tmp_path / "run" / "data.json").read_text())
    assert info["kind"] == "npz" and info["labels"] is None and info["features"] is None


def test_a_broken_data_json_is_an_error_not_a_traceback(flowers, capsys, tmp_path):
    d, spec, run_dir, held_out = flowers
    (tmp_path / "weights.npz").write_bytes((run_dir / "weights.npz").read_bytes())
    for text in ("{not json", '{"format": 1, "kind": "csv", "labels": [1, 2]}', '{"format": 99, "kind": "csv"}'):
        (tmp_path / "data.json").write_text(text)
        out = fails(["predict", spec, "--weights", tmp_path / "weights.npz", "--input",
                            write_csv(d / "b.csv", held_out[:2], target=None)], capsys)
        assert "error[E738]" in out and "data.json" in out


def test_an_old_labels_json_is_not_read(flowers, capsys, tmp_path):
    d, spec, run_dir, held_out = flowers
    (tmp_path / "weights.npz").write_bytes((run_dir / "weights.npz").read_bytes())
    (tmp_path / "labels.json").write_text('{"labels": ["x", "y", "z"]}')
    code, out, err = run(["predict", spec, "--weights", tmp_path / "weights.npz", "--input",
                          write_csv(d / "c.csv", held_out[:2], target=None)], capsys)
    assert code == 0 and "labels.json" in err and "not read" in err and "x" not in out.split(",")[-1]


# ----------------------------------------------------------------------------------------------
# 4. the Python API checks x and y, and takes string labels

@pytest.mark.parametrize("call", ["fit_short_x", "fit_short_y", "evaluate", "validation"])
def test_api_x_and_y_of_different_lengths_is_E732(call):
    ds = iris()
    m = nnc.load(SPECS / "iris_mlp.nnspec")
    with pytest.raises(NncError) as e:
        if call == "fit_short_x":
            m.fit(ds.x[:40], ds.y[:50], epochs=1)
        elif call == "fit_short_y":
            m.fit(ds.x[:50], ds.y[:40], epochs=1)                  # was a raw IndexError
        elif call == "evaluate":
            m.evaluate(ds.x[:5], ds.y[:4])
        else:
            m.fit(ds.x, ds.y, validation_data=(ds.x[:10], ds.y[:9]), epochs=1)
    d = e.value.diagnostics[0]
    assert d.code == "E732" and "rows" in d.message and d.hint


def test_api_fit_takes_string_labels_and_reuses_the_map():
    ds = iris()
    names = np.array(ds.labels)[ds.y]
    m = nnc.load(SPECS / "iris_mlp.nnspec")
    m.fit(ds.x, names, epochs=30)
    assert m.labels == ["setosa", "versicolor", "virginica"]
    some = ds.y > 0
    res = m.evaluate(ds.x[some], names[some])                     # two classes: ids 1 and 2, not 0 and 1
    assert res["accuracy"] == pytest.approx(np.mean(m.predict(ds.x[some]).argmax(1) == ds.y[some]))
    with pytest.raises(NncError) as e:
        m.evaluate(ds.x[:2], np.array(["setosa", "rose"]))
    assert e.value.diagnostics[0].code == "E735" and '"rose"' in e.value.diagnostics[0].message
    fresh = nnc.load(SPECS / "iris_mlp.nnspec")
    with pytest.raises(NncError) as e:
        fresh.evaluate(ds.x[:2], names[:2])
    assert e.value.diagnostics[0].code == "E735"


def test_api_load_weights_reads_the_label_map_of_a_run(flowers):
    d, _, run_dir, held_out = flowers
    m = nnc.load(d / "flowers.nnspec")
    m.load_weights(run_dir / "weights.npz")
    assert m.labels == ["setosa", "versicolor", "virginica"]
    ds = iris()
    assert set(m.evaluate(ds.x[held_out], np.array(ds.labels)[ds.y[held_out]])) == {"loss", "accuracy"}


def test_api_predict_on_zero_rows_and_on_nan():
    m = nnc.load(SPECS / "iris_mlp.nnspec")
    out = m.predict(np.zeros((0, 4), np.float32))
    assert isinstance(out, np.ndarray) and out.shape == (0, 3)
    x = np.ones((5, 4), np.float32)
    x[3, 2] = np.inf
    with pytest.raises(NncError) as e:
        m.predict(x)
    assert e.value.diagnostics[0].code == "E733" and "row 4" in e.value.diagnostics[0].message


# ----------------------------------------------------------------------------------------------
# 5. smaller data errors

def test_a_text_column_in_a_training_csv_is_one_error_per_column(tmp_path, capsys):
    write_csv(tmp_path / "t.csv", range(0, 150, 3), ["colour"] + COLUMNS + ["note"],
              extra={"colour": "red", "note": "ok"})
    out = fails(["train", SPECS / "iris_mlp.nnspec", "--out", tmp_path / "run", "--data",
                        f'csv("{tmp_path / "t.csv"}", target="species")'], capsys)
    assert out.count("error[E705]") == 2
    assert 'column "colour" is not numeric' in out and 'column "note" is not numeric' in out


def test_a_pandas_index_column_is_refused_with_the_fix(tmp_path, capsys):
    rows = [",a,b,y"] + [f"{i},{i * 0.5},{i % 3},{i % 2}" for i in range(20)]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(NncError) as e:
        D.load_source("csv", {"path": "p.csv", "target": "y"}, tmp_path)
    d = e.value.diagnostics[0]
    assert d.code == "E737" and "index=False" in d.hint and (d.span.line, d.span.column) == (1, 1)
    (tmp_path / "q.csv").write_text("\n".join(r.replace(",", "Unnamed: 0,", 1) if i == 0 else r
                                              for i, r in enumerate(rows)) + "\n")
    with pytest.raises(NncError):
        D.load_source("csv", {"path": "q.csv", "target": "y"}, tmp_path)
    (tmp_path / "r.csv").write_text("id,a,y\n3,1,0\n1,2,1\n")    # a named first column is a feature
    assert D.load_source("csv", {"path": "r.csv", "target": "y"}, tmp_path).x.shape == (2, 2)


def test_data_plain_npy_says_what_to_do(tmp_path, capsys):
    np.save(tmp_path / "plain.npy", np.zeros((3, 4)))
    out = fails(["train", SPECS / "iris_mlp.nnspec", "--out", tmp_path / "run", "--data",
                        tmp_path / "plain.npy"], capsys)
    assert "error[E709]" in out and "np.savez" in out and "npz(" in out


def test_predict_input_chooses_the_npz_key(flowers, capsys, tmp_path):
    d, spec, run_dir, held_out = flowers
    x = iris().x[held_out[:4]]
    np.savez(tmp_path / "f.npz", images=x, other=np.zeros(2))
    w = run_dir / "weights.npz"
    out = fails(["predict", spec, "--weights", w, "--input", tmp_path / "f.npz"], capsys)
    assert "error[E707]" in out and 'x="images"' in out      # the hint shows the syntax
    code, out, err = run(["predict", spec, "--weights", w, "--input", f'npz("{tmp_path / "f.npz"}", x="images")'],
                         capsys)
    assert code == 0, out + err
    assert len(out.splitlines()) == 4
    out = fails(["predict", spec, "--weights", w, "--input", f'npz("{tmp_path / "f.npz"}", x="image")'],
                       capsys)
    assert "error[E707]" in out and 'did you mean "images"' in out


def test_predict_input_csv_can_leave_out_its_target(flowers, capsys):
    d, spec, run_dir, held_out = flowers
    full = write_csv(d / "full.csv", held_out[:5])
    base, labels, _ = predict_rows(capsys, spec, run_dir, write_csv(d / "bare.csv", held_out[:5], target=None))
    got, got_labels, err = predict_rows(capsys, spec, run_dir, f'csv("{full}", target="species")')
    np.testing.assert_array_equal(got, base)
    assert "ignoring" not in err


def test_predict_on_nan_inputs_is_E733_with_the_row(flowers, capsys, tmp_path):
    d, spec, run_dir, held_out = flowers
    x = iris().x[:5].copy()
    x[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    out = fails(["predict", spec, "--weights", run_dir / "weights.npz", "--input", tmp_path / "nan.npy"],
                       capsys)
    assert "error[E733]" in out and "row 3" in out
