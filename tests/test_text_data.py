"""Text from a CSV column: the tokens, the vocabulary (fitted on the training split only) and the ids
equal a direct implementation of the contract's rule (5.3) written here; the vocabulary is kept in
data.json and reused by the validation source, `nnc evaluate` and `nnc predict` on raw text; every
mistake has a located error."""
from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import nnc
from nnc.cli import main
from nnc.data import load_inputs, load_source, split_indices
from nnc.data.base import DataInfo
from nnc.errors import NncError

TEXTS = [
    "The cat sat on the mat.", "A dog! A DOG? a dog...", "Über café: naïve façade, 日本語 text",
    "snake_case and 42 numbers 42", "", "   ", "tie b a", "tie a b", "Commas, \"quotes\"\nand a newline",
    "the the the the", "Dog cat dog cat bird", "one-word", "x" * 30, "mat mat sat",
]


def reference_ids(texts, fit_on, vocab, length, tokenizer="words", lowercase=True):
    """The contract's rule, written out: (tokens of ids 2.., ids (N, length))."""
    def tokens(t):
        t = t.lower() if lowercase else t
        return re.findall(r"\w+", t) if tokenizer == "words" else list(t)
    counts = Counter()
    for i in fit_on:
        counts.update(tokens(texts[i]))
    ranked = sorted(counts, key=lambda tok: (-counts[tok], tok))[:vocab - 2]
    index = {tok: i + 2 for i, tok in enumerate(ranked)}
    ids = np.zeros((len(texts), length), dtype=np.int64)
    for r, t in enumerate(texts):
        toks = [index.get(tok, 1) for tok in tokens(t)[:length]]
        ids[r, :len(toks)] = toks
    return ranked, ids


def write_texts(path: Path, texts=TEXTS, *, extra: bool = True) -> list[str]:
    labels = ["pos" if i % 2 else "neg" for i in range(len(texts))]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "body", "label"] if extra else ["body", "label"])
        for i, (t, label) in enumerate(zip(texts, labels)):
            w.writerow([i, t, label] if extra else [t, label])
    return labels


@pytest.mark.parametrize("tokenizer, lowercase, vocab, length", [
    ("words", True, 12, 5), ("words", False, 40, 8), ("chars", True, 20, 16), ("chars", False, 9, 3)])
def test_tokens_vocabulary_and_ids_follow_the_rule(tmp_path, tokenizer, lowercase, vocab, length):
    write_texts(tmp_path / "t.csv")
    args = {"path": "t.csv", "target": "label", "text": "body", "vocab": vocab, "length": length,
            "tokenizer": tokenizer, "lowercase": lowercase}
    ds = load_source("csv", args, tmp_path)
    ranked, ids = reference_ids(TEXTS, range(len(TEXTS)), vocab, length, tokenizer, lowercase)
    assert ds.text["tokens"] == ranked
    np.testing.assert_array_equal(ds.x, ids)
    assert ds.x.dtype == np.int64 and ds.x.shape == (len(TEXTS), length)
    assert ds.labels == ["neg", "pos"]
    assert any("ignoring column \"id\"" in n for n in ds.notes)


def test_ties_go_in_code_point_order_and_unknown_words_are_one():
    from nnc.data.text import encode, fit_vocabulary, tokenize
    lists = [tokenize(t) for t in ["b a", "a b", "Z z", "é e"]]
    assert fit_vocabulary(lists, 10) == ["a", "b", "z", "e", "é"]       # counts 2, 2, 2, then 1, 1
    assert fit_vocabulary(lists, 4) == ["a", "b"]
    np.testing.assert_array_equal(encode([["a", "q", "b"]], ["a", "b"], 5), [[2, 1, 3, 0, 0]])


def test_the_vocabulary_is_fitted_on_the_training_split_only(tmp_path, capsys):
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(30)]
    texts = [" ".join(rng.choice(words, size=rng.integers(3, 9))) for _ in range(60)]
    labels = write_texts(tmp_path / "t.csv", texts, extra=False)
    spec = tmp_path / "t.nnspec"
    spec.write_text("""
model t {
    input body: int64 [6]
    embedding(64, 4)
    mean(0)
    dense(2) -> softmax
}
train {
    data = csv("t.csv", target="label", text="body", vocab=24, length=6)
    validation = 0.3
    loss = cross_entropy
    epochs = 1
}
""")
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    info = json.loads((tmp_path / "run" / "data.json").read_text())
    train_rows = split_indices(60, 0.3, 0)[1]
    ranked, ids = reference_ids(texts, train_rows, 24, 6)
    assert info["text"] == {"column": "body", "vocab": 24, "length": 6, "tokenizer": "words", "lowercase": True,
                            "tokens": ranked}
    assert info["labels"] == ["neg", "pos"] and info["target"] == "label"
    everything, _ = reference_ids(texts, range(60), 24, 6)
    assert ranked != everything, "the validation rows must change the vocabulary for this test to mean anything"
    # evaluate and predict reuse it: predictions on raw text equal the model on the rule's ids
    capsys.readouterr()
    model = nnc.load(spec)
    model.load_weights(tmp_path / "run" / "weights.npz")
    assert main(["predict", str(spec), "--weights", str(tmp_path / "run" / "weights.npz"),
                 "--input", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    expected = model.predict(ids)
    got = np.array([[float(v) for v in line.split(",")[:2]] for line in out])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert [line.split(",")[2] for line in out] == model.predict_labels(ids)
    assert main(["evaluate", str(spec), "--weights", str(tmp_path / "run" / "weights.npz")]) == 0
    shown = capsys.readouterr().out
    result = model.evaluate(ids, np.array([["neg", "pos"].index(label) for label in labels]))
    assert f"accuracy {result['accuracy']:.4f}" in shown


def test_a_validation_source_inherits_or_repeats_the_options(tmp_path):
    write_texts(tmp_path / "t.csv")
    train_info = DataInfo.of(load_source("csv", {"path": "t.csv", "target": "label", "text": "body", "vocab": 10,
                                                 "length": 4, "tokenizer": "chars"}, tmp_path))
    inherited = load_source("csv", {"path": "t.csv", "target": "label"}, tmp_path, info=train_info)
    repeated = load_source("csv", {"path": "t.csv", "target": "label", "text": "body", "vocab": 10, "length": 4,
                                   "tokenizer": "chars", "lowercase": True}, tmp_path, info=train_info)
    np.testing.assert_array_equal(inherited.x, repeated.x)
    assert inherited.text["tokens"] == train_info.text["tokens"]
    with pytest.raises(NncError) as info:
        load_source("csv", {"path": "t.csv", "target": "label", "text": "body", "vocab": 10, "length": 5,
                            "tokenizer": "chars"}, tmp_path, info=train_info)
    d = info.value.diagnostics[0]
    assert d.code == "E715" and "`length` is 5" in d.message and "length=4" in d.message and d.hint
    with pytest.raises(NncError) as info:   # the default tokenizer counts as given once text= is
        load_source("csv", {"path": "t.csv", "target": "label", "text": "body", "vocab": 10, "length": 4},
                    tmp_path, info=train_info)
    assert info.value.diagnostics[0].code == "E715" and "tokenizer" in info.value.diagnostics[0].message


def _spec(tmp_path, data='csv("t.csv", target="label", text="body", vocab=30, length=5)', extra=""):
    spec = tmp_path / "t.nnspec"
    spec.write_text(f"""
model t {{
    input body: int64 [5]
    embedding(30, 4)
    flatten
    dense(2) -> softmax
}}
train {{
    data = {data}
    loss = cross_entropy
    epochs = 1
    {extra}
}}
""")
    return spec


def test_text_errors_are_located(tmp_path, capsys):
    write_texts(tmp_path / "t.csv")
    # a text column that is not there: at the source in the spec
    spec = _spec(tmp_path, 'csv("t.csv", target="label", text="review", vocab=30, length=5)')
    assert main(["train", str(spec), "--out", str(tmp_path / "r0"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "error[E714]" in err and 'no text column "review"' in err and '"body"' in err and "t.nnspec:9:" in err
    # a validation source with other options
    spec = _spec(tmp_path, extra='validation = csv("t.csv", target="label", text="body", vocab=30, length=5, '
                                 'tokenizer=chars)')
    assert main(["train", str(spec), "--out", str(tmp_path / "r1"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "error[E715]" in err and "`tokenizer` is chars" in err and "t.nnspec:12:" in err, err
    # the command line: text without its vocab
    spec = _spec(tmp_path)
    assert main(["train", str(spec), "--out", str(tmp_path / "r2"), "--quiet", "--data",
                 'csv("t.csv", target="label", text="body", length=5)']) == 1
    err = capsys.readouterr().err
    assert "error[E709]" in err and "needs `vocab`" in err
    # evaluate without the run's vocabulary
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    (tmp_path / "w.npz").write_bytes((tmp_path / "run" / "weights.npz").read_bytes())
    capsys.readouterr()
    assert main(["evaluate", str(spec), "--weights", str(tmp_path / "w.npz")]) == 1
    err = capsys.readouterr().err
    assert "error[E716]" in err and "data.json" in err and "t.nnspec:9:" in err
    assert main(["predict", str(spec), "--weights", str(tmp_path / "w.npz"), "--input", str(tmp_path / "t.csv")]) == 1
    assert "error[E716]" in capsys.readouterr().err
    # predict on a file without the text column
    (tmp_path / "other.csv").write_text("text,label\nhello,pos\n")
    assert main(["predict", str(spec), "--weights", str(tmp_path / "run" / "weights.npz"),
                 "--input", str(tmp_path / "other.csv")]) == 1
    err = capsys.readouterr().err
    assert "error[E714]" in err and 'no text column "body"' in err
    # a data.json whose vocabulary was edited into something else
    info = json.loads((tmp_path / "run" / "data.json").read_text())
    info["text"]["tokens"] = info["text"]["tokens"] * 2
    (tmp_path / "run" / "data.json").write_text(json.dumps(info))
    assert main(["evaluate", str(spec), "--weights", str(tmp_path / "run" / "weights.npz")]) == 1
    assert "error[E738]" in capsys.readouterr().err


def test_check_compares_the_source_with_the_model_statically(tmp_path, capsys):
    """Without the CSV existing at all: nnc check reads no data."""
    spec = _spec(tmp_path, 'csv("nowhere.csv", target="label", text="body", vocab=31, length=5)')
    assert main(["check", str(spec)]) == 1
    out = capsys.readouterr().out
    assert "error[E609]" in out and "embedding_1" in out
    spec = _spec(tmp_path, 'csv("nowhere.csv", target="label", text="body", vocab=30, length=6)')
    assert main(["check", str(spec)]) == 1
    assert "error[E605]" in capsys.readouterr().out
    spec = _spec(tmp_path, 'csv("nowhere.csv", target="label", text="body", vocab=30, length=5)')
    assert main(["check", str(spec)]) == 0


def test_predict_inputs_read_the_runs_text_column(tmp_path):
    write_texts(tmp_path / "t.csv")
    ds = load_source("csv", {"path": "t.csv", "target": "label", "text": "body", "vocab": 15, "length": 7}, tmp_path)
    inputs = load_inputs(str(tmp_path / "t.csv"), DataInfo.of(ds))
    np.testing.assert_array_equal(inputs.x, ds.x)
    assert inputs.y is None and any('ignoring columns "id", "label"' in n for n in inputs.notes)


@pytest.mark.parametrize("text, needle", [
    ('csv("f.csv", text=r, vocab=2, length=3)', "`vocab`: 2 is out of range"),
    ('csv("f.csv", text=r, vocab=20, length=3, lowercase=maybe)', "`lowercase`: expected `true` or `false`"),
    ('csv("f.csv", text=r, vocab=20, length=3, tokenizer=letters)', "unknown tokenizer `letters`"),
    ('csv("f.csv", vocab=10)', "`vocab` is an option of a text column"),
    ('images("p", size=[1, 2, 3])', "expected 2 values"),
    ('images("p", color=blue)', "unknown color `blue`"),
])
def test_command_line_text_and_image_options_are_typed(text, needle):
    from nnc.data import parse_source
    with pytest.raises(NncError) as info:
        parse_source(text)
    d = info.value.diagnostics[0]
    assert d.code == "E709" and needle in d.message and d.hint, d
    # at the bad value; options that do not go together, at the whole call
    assert d.span.column == 1 if "option" in needle else d.span.column > 1, d


def test_command_line_options_parse_to_typed_values():
    from nnc.data import parse_source
    assert parse_source('csv("f.csv", target=label, text=review, vocab=100, length=10, tokenizer=chars, '
                        'lowercase=false)') == ("csv", {"path": "f.csv", "target": "label", "text": "review",
                                                        "vocab": 100, "length": 10, "tokenizer": "chars",
                                                        "lowercase": False})
    assert parse_source("images(pics, size=32)") == ("images", {"folder": "pics", "size": [32, 32]})
