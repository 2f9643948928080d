"""The data layer: built-in data sets, csv / npz loaders, located errors, fitting and splitting."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nnc.errors import NncError, SourceSpan
from nnc.data import (
    BUILTIN_DATASETS, Dataset, check_dataset, fit_to_input, load_inputs, load_source,
    parse_source, split_validation,
)

SPEC_SPAN = SourceSpan(12, 12, 12, 30)


def builtin(name: str, **kw) -> Dataset:
    return load_source("dataset", {"name": name}, Path("."), **kw)


def raises(code: str, fn, *args, **kwargs):
    """Run fn, expect an NncError whose first diagnostic has ``code``; return that diagnostic."""
    with pytest.raises(NncError) as info:
        fn(*args, **kwargs)
    diag = info.value.diagnostics[0]
    assert diag.code == code, f"expected {code}, got {diag.code}: {diag.message}"
    assert diag.message and diag.hint, "every data error has a message and a hint"
    if diag.span is not None:
        assert diag.span.line >= 1 and diag.span.column >= 1
    return diag


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(content, str):
        p.write_bytes(content.encode("utf-8"))
    else:
        p.write_bytes(content)
    return p


def load_csv(tmp_path: Path, content: str | bytes, target: str | None = "y", **kw) -> Dataset:
    write(tmp_path, "d.csv", content)
    args = {"path": "d.csv"} if target is None else {"path": "d.csv", "target": target}
    return load_source("csv", args, tmp_path, **kw)


def csv_error(tmp_path: Path, code: str, content: str | bytes, target: str | None = "y"):
    diag = raises(code, load_csv, tmp_path, content, target)
    assert diag.path == str(tmp_path / "d.csv")
    return diag


# ----------------------------------------------------------------------------------------------
# built-in data

def test_builtin_names():
    assert set(BUILTIN_DATASETS) == {"and", "or", "xor", "iris", "digits", "spirals", "sine"}


def test_iris_known_facts():
    ds = builtin("iris")
    assert ds.x.shape == (150, 4) and ds.x.dtype == np.float32
    assert ds.y.shape == (150,) and ds.y.dtype == np.int64
    assert np.bincount(ds.y).tolist() == [50, 50, 50]
    np.testing.assert_array_equal(ds.x[0], np.array([5.1, 3.5, 1.4, 0.2], dtype=np.float32))
    assert ds.y[0] == 0
    assert ds.labels == ["setosa", "versicolor", "virginica"]
    assert ds.name == 'dataset("iris")'
    # summary statistics from the data set's description
    assert ds.x.min(axis=0).tolist() == pytest.approx([4.3, 2.0, 1.0, 0.1])
    assert ds.x.max(axis=0).tolist() == pytest.approx([7.9, 4.4, 6.9, 2.5])


def test_iris_float64_is_exact():
    ds = builtin("iris", float_dtype=np.float64)
    assert ds.x.dtype == np.float64
    assert ds.x[0].tolist() == [5.1, 3.5, 1.4, 0.2]


def test_digits_known_facts():
    ds = builtin("digits")
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == np.float32
    assert ds.y.shape == (1797,) and ds.y.dtype == np.int64
    assert np.bincount(ds.y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    pixels = ds.x * 16
    np.testing.assert_array_equal(pixels, np.round(pixels))  # 0..16 scaled by exactly 1/16
    assert pixels[0, 0, 0].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]  # the first image's top row
    assert ds.y[0] == 0


@pytest.mark.parametrize("name,table", [
    ("and", [0, 0, 0, 1]), ("or", [0, 1, 1, 1]), ("xor", [0, 1, 1, 0]),
])
def test_truth_tables(name, table):
    ds = builtin(name)
    assert ds.x.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert ds.x.dtype == np.float32
    assert ds.y.dtype == np.int64 and ds.y.tolist() == table


def test_spirals_shape_and_determinism():
    a, b = builtin("spirals"), builtin("spirals")
    assert a.x.shape == (300, 2) and a.x.dtype == np.float32
    assert a.y.dtype == np.int64 and np.bincount(a.y).tolist() == [100, 100, 100]
    np.testing.assert_array_equal(a.x, b.x)
    radius = np.linalg.norm(a.x, axis=1)
    assert radius.max() <= 1.0 + 1e-6
    for k in range(3):  # each arm runs from the centre outwards
        arm = radius[a.y == k]
        assert arm[0] == pytest.approx(0.0) and arm[-1] == pytest.approx(1.0)


def test_sine_shape_determinism_and_target():
    a, b = builtin("sine", float_dtype=np.float64), builtin("sine", float_dtype=np.float64)
    assert a.x.shape == (1000, 20, 1) and a.y.shape == (1000, 1) and a.y.dtype == np.float64
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert np.abs(a.x).max() <= 1.0 and np.abs(a.y).max() <= 1.0
    # a sine sampled at a fixed step obeys s[t+1] = 2cos(w) s[t] - s[t-1]: the target is the next
    # value of the same wave
    s = a.x[:, :, 0]
    c = ((s[:, 2:] + s[:, :-2]) * s[:, 1:-1]).sum(1) / (2 * (s[:, 1:-1] ** 2).sum(1))
    np.testing.assert_allclose(a.y[:, 0], 2 * c * s[:, -1] - s[:, -2], atol=1e-9)
    assert builtin("sine").x.dtype == np.float32


def test_generated_sets_ignore_global_random_state():
    np.random.seed(123)
    a = builtin("spirals").x
    np.random.seed(456)
    np.testing.assert_array_equal(a, builtin("spirals").x)


def test_builtin_returns_fresh_arrays():
    ds = builtin("iris")
    ds.x[:] = 0
    ds.y[:] = 7
    again = builtin("iris")
    assert again.x[0, 0] == np.float32(5.1) and again.y[0] == 0


def test_unknown_dataset_did_you_mean():
    diag = raises("E701", load_source, "dataset", {"name": "irsi"}, Path("."),
                  span=SPEC_SPAN, spec_path="specs/a.nnspec")
    assert 'did you mean "iris"' in diag.hint
    assert diag.span == SPEC_SPAN and diag.path == "specs/a.nnspec"
    assert "irsi" in diag.message


def test_unknown_source_kind_and_parameter():
    diag = raises("E709", load_source, "cvs", {"path": "a.csv"}, Path("."))
    assert "did you mean `csv`" in diag.hint
    diag = raises("E709", load_source, "csv", {"path": "a.csv", "targte": "y"}, Path("."))
    assert "did you mean `target`" in diag.hint


# ----------------------------------------------------------------------------------------------
# csv: happy paths

def test_csv_int_target_is_class_ids(tmp_path):
    ds = load_csv(tmp_path, "a,b,y\n1,2.5,0\n3,4,2\n-1,0.5,1\n")
    assert ds.x.dtype == np.float32 and ds.x.tolist() == [[1, 2.5], [3, 4], [-1, 0.5]]
    assert ds.y.dtype == np.int64 and ds.y.tolist() == [0, 2, 1]
    assert ds.labels is None
    assert ds.name == ds.path == str(tmp_path / "d.csv")


def test_csv_float_target_stays_float(tmp_path):
    ds = load_csv(tmp_path, "a,y\n1,0.5\n2,3.0\n", float_dtype=np.float64)
    assert ds.y.dtype == np.float64 and ds.y.tolist() == [0.5, 3.0]


def test_csv_string_target_becomes_ids_and_labels(tmp_path):
    ds = load_csv(tmp_path, "f1,species,f2\n1,virginica,2\n3,setosa,4\n5, versicolor ,6\n7,setosa,8\n",
                  target="species")
    assert ds.labels == ["setosa", "versicolor", "virginica"]
    assert ds.y.tolist() == [2, 0, 1, 0]
    assert ds.x.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]  # the target column is taken out


def test_csv_quoted_fields_bom_crlf_and_blank_lines(tmp_path):
    content = '\ufeff"width, cm","height",label\r\n"1.5",2,"a, b"\r\n\r\n3,"4",c\r\n\r\n\r\n'
    ds = load_csv(tmp_path, content, target="label")
    assert ds.x.tolist() == [[1.5, 2], [3, 4]]
    assert ds.labels == ["a, b", "c"] and ds.y.tolist() == [0, 1]


def test_csv_bom_column_name_is_found(tmp_path):
    ds = load_csv(tmp_path, "\ufeffy,x\n1,2\n", target="y")
    assert ds.y.tolist() == [1] and ds.x.tolist() == [[2]]


def test_csv_default_target_is_last_column(tmp_path):
    ds = load_csv(tmp_path, "a,b,c\n1,2,3\n", target=None)
    assert ds.x.tolist() == [[1, 2]] and ds.y.tolist() == [3]


def test_csv_relative_to_base_dir_and_float64(tmp_path):
    (tmp_path / "data").mkdir()
    write(tmp_path / "data", "t.csv", "x,y\n0.1,1\n")
    ds = load_source("csv", {"path": "data/t.csv", "target": "y"}, tmp_path, float_dtype=np.float64)
    assert ds.x.dtype == np.float64 and ds.x[0, 0] == 0.1


def test_csv_digits_round_trip_reshapes_to_image(tmp_path):
    digits = builtin("digits")
    flat = digits.x.reshape(len(digits), -1)[:20] * 16
    header = ",".join(f"p{i}" for i in range(64)) + ",label"
    rows = [",".join(str(int(v)) for v in r) + f",{c}" for r, c in zip(flat, digits.y[:20])]
    ds = load_csv(tmp_path, header + "\n" + "\n".join(rows) + "\n", target="label")
    assert ds.x.shape == (20, 64)
    fitted = fit_to_input(ds, (1, 8, 8), "float32", np.float32)
    assert fitted.x.shape == (20, 1, 8, 8)
    np.testing.assert_array_equal(fitted.x, digits.x[:20] * 16)


# ----------------------------------------------------------------------------------------------
# csv: every error, located in the file

def test_missing_file_points_at_spec_with_absolute_hint(tmp_path):
    diag = raises("E702", load_source, "csv", {"path": "nope.csv", "target": "y"}, tmp_path,
                  span=SPEC_SPAN, spec_path="spec.nnspec")
    assert diag.path == "spec.nnspec" and diag.span == SPEC_SPAN
    assert str((tmp_path / "nope.csv").resolve()) in diag.hint
    assert "nope.csv" in diag.message


def test_missing_file_without_spec_names_the_file(tmp_path):
    write(tmp_path, "train.csv", "x,y\n1,2\n")
    diag = raises("E702", load_source, "csv", {"path": "trian.csv"}, tmp_path)
    assert diag.path == str(tmp_path / "trian.csv")
    assert 'did you mean "train.csv"' in diag.hint


def test_directory_is_not_a_data_file(tmp_path):
    (tmp_path / "d.csv").mkdir()
    raises("E702", load_source, "csv", {"path": "d.csv"}, tmp_path)


@pytest.mark.parametrize("content", ["", "\n\n  \n", "\ufeff"])
def test_empty_csv(tmp_path, content):
    diag = csv_error(tmp_path, "E703", content)
    assert "empty" in diag.message


def test_csv_without_header(tmp_path):
    diag = csv_error(tmp_path, "E703", "5.1,3.5,0\n4.9,3.0,1\n")
    assert "header" in diag.message and diag.span.line == 1


def test_csv_ragged_row_too_many_fields(tmp_path):
    diag = csv_error(tmp_path, "E703", "a,b,y\n1,2,0\n3,4,1,9\n")
    assert (diag.span.line, diag.span.column) == (3, 7)  # the extra field "9"
    assert "4 fields" in diag.message and "header has 3" in diag.message


def test_csv_ragged_row_too_few_fields(tmp_path):
    diag = csv_error(tmp_path, "E703", "a,b,y\n1,2,0\n\n3,4\n")
    assert (diag.span.line, diag.span.column) == (4, 4)  # just past the end of "3,4"


def test_csv_not_utf8(tmp_path):
    diag = csv_error(tmp_path, "E703", "name,y\nx,1\ncaf\xe9,2\n".encode("latin-1"))
    assert (diag.span.line, diag.span.column) == (3, 4)
    assert "UTF-8" in diag.message and "0xe9" in diag.message


def test_csv_utf16(tmp_path):
    diag = csv_error(tmp_path, "E703", "a,y\n1,2\n".encode("utf-16"))
    assert "UTF-16" in diag.message


def test_csv_unterminated_quote(tmp_path):
    diag = csv_error(tmp_path, "E703", 'a,y\n1,2\n"3,4\n5,6\n')
    assert (diag.span.line, diag.span.column) == (3, 1)


def test_csv_duplicate_column(tmp_path):
    diag = csv_error(tmp_path, "E703", "a,b,a,y\n1,2,3,4\n")
    assert (diag.span.line, diag.span.column) == (1, 5)


def test_csv_only_target_column(tmp_path):
    csv_error(tmp_path, "E703", "y\n1\n2\n")


def test_csv_target_missing_in_file(tmp_path):
    diag = csv_error(tmp_path, "E704", "sepal,petal,species\n1,2,a\n", target="specie")
    assert '"sepal", "petal", "species"' in diag.message
    assert 'did you mean "species"' in diag.hint
    assert diag.span.line == 1


def test_csv_target_missing_points_at_spec_when_given(tmp_path):
    write(tmp_path, "d.csv", "a,Label\n1,2\n")
    diag = raises("E704", load_source, "csv", {"path": "d.csv", "target": "label"}, tmp_path,
                  span=SPEC_SPAN, spec_path="s.nnspec")
    assert diag.path == "s.nnspec" and diag.span == SPEC_SPAN
    assert 'did you mean "Label"' in diag.hint


@pytest.mark.parametrize("target", ["y", None])
@pytest.mark.parametrize("sep,word", [(";", "semicolons"), ("\t", "tabs")])
def test_csv_semicolon_or_tab_separated_says_how_to_convert(tmp_path, target, sep, word):
    # with or without a target the message is the same: not "no column y" nor "no feature columns"
    diag = csv_error(tmp_path, "E703", sep.join("aby") + "\n" + sep.join("123") + "\n", target)
    assert word in diag.message and "not commas" in diag.message
    assert "csv.reader(sys.stdin, delimiter=" in diag.hint and "> d_commas.csv" in diag.hint


def test_csv_one_column_whose_name_holds_a_semicolon_is_not_refused(tmp_path):
    assert load_inputs(write(tmp_path, "one.csv", "width;cm\n1.5\n2\n")).x.tolist() == [[1.5], [2.0]]


def test_csv_semicolons_with_decimal_commas_suggest_pandas(tmp_path):
    # "1,5;2,25;0": read as commas the rows would be ragged; the separator is the real problem
    diag = csv_error(tmp_path, "E703", "a;b;y\n1,5;2,25;0\n3,0;4,5;1\n")
    assert "semicolons" in diag.message and 'decimal=","' in diag.hint


def test_csv_non_numeric_feature(tmp_path):
    diag = csv_error(tmp_path, "E705", "height,colour,y\n1.0,2,0\n\n2.0,red,1\n")
    assert (diag.span.line, diag.span.column) == (4, 5)
    assert diag.span.end_column == 8
    assert "'red'" in diag.message and '"colour"' in diag.message and "line 4" in diag.message


def test_csv_error_line_counts_quoted_newlines(tmp_path):
    content = 'note,v,y\n"two\nlines",1,0\n"3",oops,1\n'
    # "note" is a feature too, so the first bad cell is the quoted text on line 2
    diag = csv_error(tmp_path, "E705", content)
    assert (diag.span.line, diag.span.column) == (2, 1)
    content = 'v,note,y\n1,0,"two\nlines"\n2,"x",1\n'
    diag = csv_error(tmp_path, "E705", content)
    assert (diag.span.line, diag.span.column) == (4, 3)  # the quoted "x", counting from its quote


def test_csv_reports_several_bad_cells(tmp_path):
    with pytest.raises(NncError) as info:
        load_csv(tmp_path, "a,b,y\nx,1,0\n2,,0\n3,z,0\n")
    codes = [(d.code, d.span.line, d.span.column) for d in info.value.diagnostics]
    assert codes == [("E705", 2, 1), ("E706", 3, 3), ("E705", 4, 3)]


@pytest.mark.parametrize("cell,col", [("", 3), ("NA", 3), ("  ", 3), ("?", 3), ("null", 3)])
def test_csv_missing_feature_value(tmp_path, cell, col):
    diag = csv_error(tmp_path, "E706", f"a,b,y\n1,2,0\n3,{cell},1\n")
    assert (diag.span.line, diag.span.column) == (3, col)
    assert '"b"' in diag.message


def test_csv_missing_target_value(tmp_path):
    diag = csv_error(tmp_path, "E706", "a,y\n1,cat\n2,\n3,dog\n")
    assert (diag.span.line, diag.span.column) == (3, 3)


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity", "1e999"])
def test_csv_non_finite_feature(tmp_path, cell):
    diag = csv_error(tmp_path, "E733", f"a,b,y\n1,2,0\n3,{cell},1\n")
    assert (diag.span.line, diag.span.column) == (3, 3)


def test_csv_non_finite_float_target(tmp_path):
    diag = csv_error(tmp_path, "E733", "a,y\n1,0.5\n2,nan\n")
    assert (diag.span.line, diag.span.column) == (3, 3)


def test_csv_header_only_is_empty_data(tmp_path):
    diag = csv_error(tmp_path, "E734", "a,b,y\n\n")
    assert diag.span.line == 1


def test_csv_error_carries_file_text_for_rendering(tmp_path):
    with pytest.raises(NncError) as info:
        load_csv(tmp_path, "a,y\n1,0\nq,1\n")
    err = info.value
    assert err.sources[err.diagnostics[0].path].split("\n")[2] == "q,1"


# ----------------------------------------------------------------------------------------------
# npz

def save_npz(tmp_path: Path, name: str = "d.npz", **arrays) -> Path:
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


def test_npz_happy_path(tmp_path):
    save_npz(tmp_path, x=np.arange(12, dtype=np.float64).reshape(3, 4), y=np.array([0, 1, 2], np.int32))
    ds = load_source("npz", {"path": "d.npz"}, tmp_path)
    assert ds.x.shape == (3, 4) and ds.x.dtype == np.float32
    assert ds.y.dtype == np.int64 and ds.y.tolist() == [0, 1, 2]
    assert ds.path == str(tmp_path / "d.npz")


def test_npz_custom_keys_tokens_and_float_targets(tmp_path):
    tokens = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32)
    save_npz(tmp_path, ids=tokens, target=np.array([[0.5], [1.5]]))
    ds = load_source("npz", {"path": "d.npz", "x": "ids", "y": "target"}, tmp_path,
                     float_dtype=np.float64)
    assert ds.x.dtype == np.int32 and ds.x.tolist() == tokens.tolist()  # ids kept as integers
    assert ds.y.dtype == np.float64 and ds.y.shape == (2, 1)
    fitted = fit_to_input(ds, (3,), "int64", np.float64)
    assert fitted.x.dtype == np.int64


def test_npz_string_targets_become_labels(tmp_path):
    save_npz(tmp_path, x=np.zeros((3, 2)), y=np.array(["dog", "cat", "dog"]))
    ds = load_source("npz", {"path": "d.npz"}, tmp_path)
    assert ds.labels == ["cat", "dog"] and ds.y.tolist() == [1, 0, 1]


def test_npz_without_targets(tmp_path):
    save_npz(tmp_path, x=np.zeros((3, 2)))
    ds = load_source("npz", {"path": "d.npz", "y": None}, tmp_path)
    assert ds.y is None


def test_npz_key_missing(tmp_path):
    save_npz(tmp_path, features=np.zeros((2, 2)), y=np.zeros(2))
    diag = raises("E707", load_source, "npz", {"path": "d.npz"}, tmp_path)
    assert '"features", "y"' in diag.message and diag.path == str(tmp_path / "d.npz")
    diag = raises("E707", load_source, "npz", {"path": "d.npz", "x": "features", "y": "ys"},
                  tmp_path, span=SPEC_SPAN, spec_path="s.nnspec")
    assert diag.path == "s.nnspec" and 'did you mean "y"' in diag.hint


class _Boom:
    """Unpickling this creates ``marker``: proof that a loader unpickled the file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_npz_object_array_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    payload = np.array([_Boom(str(marker)), 1], dtype=object)
    np.savez(tmp_path / "d.npz", x=payload, y=np.zeros(2))
    assert not marker.exists()
    diag = raises("E708", load_source, "npz", {"path": "d.npz"}, tmp_path)
    assert "pickled" in diag.message and diag.path == str(tmp_path / "d.npz")
    assert not marker.exists()
    np.save(tmp_path / "o.npy", payload)
    raises("E708", load_inputs, tmp_path / "o.npy")
    assert not marker.exists()


def test_plain_pickle_is_refused(tmp_path):
    marker = tmp_path / "unpickled"
    write(tmp_path, "d.npz", pickle.dumps(_Boom(str(marker))))
    diag = raises("E708", load_source, "npz", {"path": "d.npz"}, tmp_path)
    assert "pickle" in diag.message
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"not numpy at all", b"PK\x03\x04garbage", b"\x93NUMPY\x01\x00junk"])
def test_npz_unreadable(tmp_path, content):
    write(tmp_path, "d.npz", content)
    raises("E708", load_source, "npz", {"path": "d.npz"}, tmp_path)


def test_npy_given_as_npz(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros(3))
    (tmp_path / "d.npy").rename(tmp_path / "d.npz")
    diag = raises("E708", load_source, "npz", {"path": "d.npz"}, tmp_path)
    assert "single array" in diag.message


def test_npz_corrupt_member(tmp_path):
    p = save_npz(tmp_path, x=np.zeros((2, 2)), y=np.zeros(2))
    with zipfile.ZipFile(p, "w") as z:  # a member that is not a .npy
        z.writestr("x.npy", b"\x93NUMPY garbage")
        z.writestr("y.npy", b"")
    raises("E708", load_source, "npz", {"path": "d.npz"}, tmp_path)


def test_npz_text_features_refused(tmp_path):
    save_npz(tmp_path, x=np.array([["a", "b"]]), y=np.zeros(1))
    raises("E705", load_source, "npz", {"path": "d.npz"}, tmp_path)


# ----------------------------------------------------------------------------------------------
# predict inputs

def test_load_inputs_formats(tmp_path):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "a.npy", arr)
    np.savez(tmp_path / "b.npz", x=arr, other=np.zeros(1))
    np.savez(tmp_path / "c.npz", inputs=arr)
    write(tmp_path, "d.csv", "p,q,r\n0,1,2\n3,4,5\n")
    for name in ("a.npy", "b.npz", "c.npz", "d.csv"):
        np.testing.assert_array_equal(load_inputs(tmp_path / name).x, arr)


def test_load_inputs_errors(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.zeros(2), b=np.zeros(2))
    diag = raises("E707", load_inputs, tmp_path / "two.npz")
    assert '"a", "b"' in diag.message
    raises("E702", load_inputs, tmp_path / "missing.npy")
    write(tmp_path, "x.txt", "1 2 3")
    raises("E702", load_inputs, tmp_path / "x.txt")
    write(tmp_path, "bad.csv", "a,b\n1,2\n3,x\n")
    diag = raises("E705", load_inputs, tmp_path / "bad.csv")
    assert (diag.span.line, diag.span.column, diag.path) == (3, 3, str(tmp_path / "bad.csv"))
    write(tmp_path, "empty.csv", "a,b\n")
    raises("E734", load_inputs, tmp_path / "empty.csv")
    np.save(tmp_path / "scalar.npy", np.float32(3))
    raises("E734", load_inputs, tmp_path / "scalar.npy")


# ----------------------------------------------------------------------------------------------
# fit_to_input, check_dataset, split_validation

def test_fit_to_input_reshapes_digits_both_ways():
    digits = builtin("digits")
    flat = fit_to_input(digits, (64,), "float32", np.float32)
    assert flat.x.shape == (1797, 64)
    image = fit_to_input(flat, (1, 8, 8), "float32", np.float64)
    assert image.x.shape == (1797, 1, 8, 8) and image.x.dtype == np.float64
    np.testing.assert_array_equal(image.x, digits.x)
    assert image.y.dtype == np.int64


def test_fit_to_input_mismatch_names_both_shapes():
    diag = raises("E731", fit_to_input, builtin("iris"), (1, 8, 8), "float32", np.float32,
                  input_name="image", span=SPEC_SPAN, spec_path="s.nnspec")
    assert "[4]" in diag.message and "[1, 8, 8]" in diag.message and "'image'" in diag.message
    assert diag.span == SPEC_SPAN


def test_fit_to_input_casts_float_targets():
    ds = fit_to_input(builtin("sine"), (20, 1), "float32", np.float64)
    assert ds.x.dtype == ds.y.dtype == np.float64


def test_fit_to_input_tokens():
    ds = Dataset(np.array([[1.0, 2.0], [3.0, 0.0]]), np.array([0, 1]), "t")
    assert fit_to_input(ds, (2,), "int64", np.float32).x.dtype == np.int64
    bad = Dataset(np.array([[1.0, 2.0], [3.5, 0.0]]), None, "t")
    diag = raises("E731", fit_to_input, bad, (2,), "int64", np.float32)
    assert "row 2" in diag.message and "3.5" in diag.message
    raises("E731", fit_to_input, Dataset(np.array([[1, -2]]), None, "t"), (2,), "int64", np.float32)


def test_check_dataset():
    check_dataset(builtin("iris"))
    diag = raises("E732", check_dataset, Dataset(np.zeros((3, 2)), np.zeros(2), "d"))
    assert "3 rows" in diag.message and "2" in diag.message
    x = np.zeros((5, 2))
    x[3, 1] = np.nan
    diag = raises("E733", check_dataset, Dataset(x, None, "d", path="f.npz"))
    assert "row 4" in diag.message and diag.path == "f.npz"
    y = np.zeros((5, 1))
    y[0] = np.inf
    diag = raises("E733", check_dataset, Dataset(np.zeros((5, 2)), y, "d"))
    assert "y" in diag.message and "row 1" in diag.message
    raises("E734", check_dataset, Dataset(np.zeros((0, 2)), np.zeros(0), "d"))
    raises("E734", check_dataset, Dataset(np.zeros((3, 0)), np.zeros(3), "d"))


def test_split_validation_sizes_and_determinism():
    ds = builtin("iris")
    train, val = split_validation(ds, 0.2, seed=0)
    assert len(train) == 120 and len(val) == 30
    train2, val2 = split_validation(ds, 0.2, seed=0)
    np.testing.assert_array_equal(val.x, val2.x)
    np.testing.assert_array_equal(train.y, train2.y)
    _, val3 = split_validation(ds, 0.2, seed=1)
    assert not np.array_equal(val.x, val3.x)
    # disjoint, complete, and each part in file order
    rows = {tuple(r) for r in ds.x.tolist()}
    assert len(rows) < 150  # iris has duplicate rows, so compare by index instead
    index = np.arange(150, dtype=np.float32)[:, None]
    tagged = Dataset(np.hstack([ds.x, index]), ds.y, ds.name, ds.labels)
    t, v = split_validation(tagged, 0.2, seed=0)
    ti, vi = t.x[:, -1].astype(int), v.x[:, -1].astype(int)
    assert sorted(ti.tolist() + vi.tolist()) == list(range(150))
    assert (np.diff(ti) > 0).all() and (np.diff(vi) > 0).all()
    assert val.labels == ds.labels


def test_split_validation_edges():
    xor = builtin("xor")
    train, val = split_validation(xor, 0.0, seed=0)
    assert len(train) == 4 and len(val) == 0
    train, val = split_validation(xor, 0.1, seed=0)
    assert len(train) == 3 and len(val) == 1  # a positive fraction holds out at least one row
    one = Dataset(np.zeros((1, 2)), np.zeros(1, np.int64), "one")
    raises("E734", split_validation, one, 0.5, 0)
    raises("E734", split_validation, xor, 1.0, 0)


# ----------------------------------------------------------------------------------------------
# --data values

@pytest.mark.parametrize("text,expected", [
    ('dataset("iris")', ("dataset", {"name": "iris"})),
    ("dataset('digits')", ("dataset", {"name": "digits"})),
    ('dataset(name="xor")', ("dataset", {"name": "xor"})),
    ('  csv("x.csv", target="y")  ', ("csv", {"path": "x.csv", "target": "y"})),
    ('csv("data/my file.csv", "label")', ("csv", {"path": "data/my file.csv", "target": "label"})),
    ('csv(path="a.csv",)', ("csv", {"path": "a.csv"})),
    ('npz("a.npz")', ("npz", {"path": "a.npz", "x": "x", "y": "y"})),
    ("npz('a.npz', x=feats, y='t')", ("npz", {"path": "a.npz", "x": "feats", "y": "t"})),
    ("runs/train.csv", ("csv", {"path": "runs/train.csv"})),
    ("runs(2)/train.csv", ("csv", {"path": "runs(2)/train.csv"})),
    ("D.NPZ", ("npz", {"path": "D.NPZ", "x": "x", "y": "y"})),
    ("spirals", ("dataset", {"name": "spirals"})),
])
def test_parse_source_good(text, expected):
    assert parse_source(text) == expected


@pytest.mark.parametrize("text,column,needle", [
    ("", 1, "empty"),
    ('dataset("iris"', 15, "missing `)`"),
    ('dataset("iris") extra', 17, "after `)`"),
    ('datset("iris")', 1, "unknown data source"),
    ('csv("a.csv", targt="y")', 14, "no parameter `targt`"),
    ('csv(target="y")', 1, "needs `path`"),
    ('csv("a.csv", target="y", "b")', 26, "positional argument follows"),
    ('dataset("a", "b")', 14, "at most 1 positional"),
    ('dataset("iris)', 9, "unterminated string"),
    ('csv("a.csv" target="y")', 13, "expected `,` or `)`"),
    ('csv("a.csv", target=)', 21, "expected a value"),
    ('csv("a.csv", target="a", target="b")', 26, "given twice"),
    ("dataset(@)", 9, "unexpected '@'"),
    ("irsi", 1, "not a data source"),
    ("data.json", 1, "not a data source"),
])
def test_parse_source_bad(text, column, needle):
    diag = raises("E709", parse_source, text)
    assert diag.span.line == 1 and diag.span.column == column, diag
    assert needle in diag.message


def test_parse_source_did_you_mean():
    assert 'did you mean "iris"' in raises("E709", parse_source, "irsi").hint
    assert "did you mean `npz`" in raises("E709", parse_source, 'npy("a.npz")').hint


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='dataset(csvnpz"\'=,) x.ytarget', max_size=40))
def test_parse_source_never_crashes(text):
    try:
        kind, args = parse_source(text)
    except NncError as exc:
        assert exc.diagnostics[0].code == "E709"
    else:
        assert kind in ("dataset", "csv", "npz") and isinstance(args, dict)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=120) | st.text(alphabet='ab,y"\n\r 1.5\ufeffé-', max_size=80))
def test_csv_loader_never_crashes(tmp_path_factory, content):
    folder = tmp_path_factory.mktemp("fuzz", numbered=True)
    try:
        ds = load_csv(folder, content, target=None)
    except NncError as exc:
        for d in exc.diagnostics:
            assert d.code.startswith("E7") and d.path and d.message
            if d.span is not None:
                assert d.span.line >= 1 and d.span.column >= 1
    else:
        check_dataset(ds)
        assert len(ds.x) == len(ds.y) > 0


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_npz_loader_never_crashes(tmp_path_factory, content):
    folder = tmp_path_factory.mktemp("fuzz", numbered=True)
    write(folder, "d.npz", b"PK\x03\x04" + content if content[:1] == b"P" else content)
    try:
        load_source("npz", {"path": "d.npz"}, folder)
    except NncError as exc:
        assert exc.diagnostics[0].code in ("E707", "E708")
