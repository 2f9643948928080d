"""Regression tests for problems found by exploratory use of the CLI and the API."""
from __future__ import annotations

import numpy as np
import pytest

import nnc
from nnc.cli import main

SPECS = __import__("pathlib").Path(__file__).resolve().parent.parent / "specs"
IRIS = str(SPECS / "iris_mlp.nnspec")
TOKENS = str(SPECS / "sequence_classifier.nnspec")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_headerless_csv_is_refused_not_trained_without_its_first_row(tmp_path, capsys):
    f = tmp_path / "nohdr.csv"
    f.write_text("5.1,3.5,1.4,0.2,setosa\n4.9,3.0,1.4,0.2,setosa\n")
    code, out = run(capsys, "train", IRIS, "--data", f, "--out", tmp_path / "run")
    assert code == 1 and "E703" in out and "no header row" in out
    assert not (tmp_path / "run").exists()


def test_set_values_are_located_in_their_own_text(capsys):
    code, out = run(capsys, "summary", IRIS, "--set", "optimizer=adam(lr=-1)")
    assert code == 1
    assert "<--set optimizer>:1:9: error[E402]" in out      # `-1` starts at column 9 of adam(lr=-1)


def test_a_bad_data_argument_is_located_on_the_command_line(tmp_path, capsys):
    code, out = run(capsys, "train", IRIS, "--data", "irs", "--out", tmp_path / "run")
    assert code == 1 and "<--data>:1:1: error[E709]" in out and "iris" in out


def test_a_failed_first_epoch_leaves_no_empty_run_directory(tmp_path, capsys):
    code, out = run(capsys, "train", IRIS, "--out", tmp_path / "run", "--set", "optimizer=sgd(lr=1e30)")
    assert code == 1 and "E761" in out and "nothing was saved" in out
    assert not (tmp_path / "run").exists()


def test_resume_accepts_the_checkpoint_file(tmp_path, capsys):
    assert run(capsys, "train", IRIS, "--out", tmp_path / "run", "--set", "epochs=2", "--quiet")[0] == 0
    code, out = run(capsys, "train", IRIS, "--resume", tmp_path / "run" / "checkpoint.npz",
                    "--set", "epochs=3", "--quiet")
    assert code == 0 and "3 epochs" in out


def test_a_checkpoint_given_as_weights_says_so(tmp_path, capsys):
    assert run(capsys, "train", IRIS, "--out", tmp_path / "run", "--set", "epochs=1", "--quiet")[0] == 0
    code, out = run(capsys, "evaluate", IRIS, "--weights", tmp_path / "run" / "checkpoint.npz")
    assert code == 1 and "E750" in out and "checkpoint" in out and out.count("error[") == 1


def test_weights_of_another_model_are_one_clear_error(tmp_path, capsys):
    w = tmp_path / "other.npz"
    np.savez(w, **{"conv2d_1.weight": np.zeros((2, 1, 3, 3), np.float32)})
    code, out = run(capsys, "evaluate", IRIS, "--weights", w)
    assert code == 1 and "different model" in out and out.count("error[") == 1


def test_token_ids_out_of_range_are_found_before_training(tmp_path, capsys):
    data = np.load(SPECS / "data" / "tokens.npz")
    x = data["x"].copy()
    x[5, 3] = 999
    f = tmp_path / "big_ids.npz"
    np.savez(f, x=x, y=data["y"])
    code, out = run(capsys, "train", TOKENS, "--data", f"npz(\"{f}\")", "--out", tmp_path / "run")
    assert code == 1 and "E731" in out and "example 5" in out and "999" in out
    assert not (tmp_path / "run").exists()


def test_api_errors_are_nnc_errors(tmp_path):
    model = nnc.load(IRIS)
    with pytest.raises(nnc.NncError) as info:
        model.save_weights(tmp_path / "missing-dir" / "w.npz")
    assert info.value.diagnostics[0].code == "E764"
    with pytest.raises(nnc.NncError):
        model.predict(np.zeros((2, 4), np.float32), batch_size=0)
    two = nnc.load(SPECS / "two_input_concat.nnspec")
    with pytest.raises(nnc.NncError) as info:
        two.predict({"a": np.ones((2, 4)), "b": np.ones((3, 3))})
    assert info.value.diagnostics[0].code == "E732"


def test_unknown_flag_suggests_set(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", IRIS, "--epochs", "3"])
    assert info.value.code == 2
    assert "--set epochs=" in capsys.readouterr().err


def test_a_name_local_to_repeat_gets_a_hint(capsys, tmp_path):
    f = tmp_path / "r.nnspec"
    f.write_text("model m {\n    input x: [4]\n    repeat 2 {\n        h = dense(4)\n    }\n    h -> relu\n}\n")
    code, out = run(capsys, "check", f)
    assert code == 1 and "local to it" in out


def test_predict_on_a_csv_with_its_label_column_is_one_error(tmp_path, capsys):
    assert run(capsys, "train", IRIS, "--out", tmp_path / "run", "--set", "epochs=1", "--quiet")[0] == 0
    f = tmp_path / "in.csv"
    f.write_text("a,b,c,d,label\n" + "5.1,3.5,1.4,0.2,setosa\n" * 12)
    code, out = run(capsys, "predict", IRIS, "--weights", tmp_path / "run" / "weights.npz", "--input", f)
    assert code == 1 and out.count("error[E705]") == 1 and 'drop "label"' in out
