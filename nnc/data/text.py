"""Text from a CSV column: ``csv("reviews.csv", target="label", text="review", vocab=20000,
length=200, tokenizer=words, lowercase=true)`` (contract 5.3).

The rules, exactly:

- **Tokens**: ``re.findall(r"\\w+", text)`` (``words``; ``\\w`` is Python's Unicode word character)
  or every single character, white space included (``chars``), after ``str.lower()`` when
  ``lowercase``.
- **Vocabulary**, fitted on the training split only: id 0 is padding, id 1 unknown, then the
  ``vocab - 2`` tokens with the most occurrences over the whole texts (every token, before
  truncation to ``length``), ties in code-point order (Python's string order). Fewer distinct
  tokens leave the higher ids unused.
- **Ids**: each text becomes ``length`` int64 ids: the ids of its first ``length`` tokens (1 for a
  token outside the vocabulary), then 0 up to ``length``.

A validation source, ``nnc evaluate --data`` and ``nnc predict`` reuse the training source's
vocabulary and options (the run's ``data.json``): a source that names no ``text`` column inherits
them all; one that does must repeat them exactly (E715 for a difference). The other columns of the
file (but the target) are ignored, with a note.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
from nnc import vocab
from nnc.errors import NncError

from .base import DataInfo, Dataset, _did_you_mean, _join_hints
from .labels import quoted_list

_WORD = re.compile(vocab.WORD_PATTERN)

#: the options of a text column, as data.json keeps them (with the vocabulary's "tokens")
OPTION_KEYS = ("column", "vocab", "length", "tokenizer", "lowercase")


def tokenize(text: str, tokenizer: str = "words", lowercase: bool = True) -> list[str]:
    """The tokens of one text (see the module docstring)."""
    if lowercase:
        text = text.lower()
    return _WORD.findall(text) if tokenizer == "words" else list(text)


def fit_vocabulary(token_lists, size: int) -> list[str]:
    """The tokens of ids 2, 3, ... (at most ``size - 2``): most occurrences first, ties in code-point
    order."""
    counts = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [tok for tok, _ in ranked[:size - 2]]


def encode(token_lists, tokens: list[str], length: int) -> np.ndarray:
    """(N, length) int64 ids of each text's first ``length`` tokens, 0-padded at the end."""
    index = {tok: i + 2 for i, tok in enumerate(tokens)}
    out = np.zeros((len(token_lists), length), dtype=np.int64)
    for r, toks in enumerate(token_lists):
        ids = [index.get(t, 1) for t in toks[:length]]
        out[r, :len(ids)] = ids
    return out


def options_of(args: dict) -> dict:
    """A source's text options in data.json's form (``text`` becomes ``column``)."""
    return {"column": args["text"], "vocab": int(args["vocab"]), "length": int(args["length"]),
            "tokenizer": args.get("tokenizer") or "words",
            "lowercase": True if args.get("lowercase") is None else bool(args["lowercase"])}


def inherited_options(args: dict, info: DataInfo, what: str, where: dict) -> dict:
    """The training source's text options (from ``info``) for a source read with them: all of them
    when ``args`` names no text column, else ``args``' own, which must equal them (E715)."""
    trained = {k: info.text[k] for k in OPTION_KEYS}
    if args.get("text") is None:
        return trained
    mine = options_of(args)
    for key in OPTION_KEYS:
        if mine[key] != trained[key]:
            name = "text" if key == "column" else key
            raise NncError.single(
                "E715", f"{what}: `{name}` is {_show(mine[key])}, but the model was trained with "
                f"{name}={_show(trained[key])} ({info.where()})",
                hint="a validation or evaluation source reuses the training source's text options and vocabulary: "
                     "repeat them exactly, or leave them out (text=, vocab=, length=, tokenizer=, lowercase=)",
                **where)
    return trained


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return f'"{v}"' if isinstance(v, str) and v not in vocab.TOKENIZERS.choices else str(v)


def text_column(table, name: str, where: dict, what: str):
    """The index of column ``name`` of a parsed CSV (E714 naming the columns otherwise)."""
    if name in table.header:
        return table.header.index(name)
    raise NncError.single(
        "E714", f'{table.path} has no text column "{name}"; its columns are: {quoted_list(table.header, 20)}',
        hint=_join_hints(_did_you_mean(name, table.header), f"{what} reads its token ids from the column named by "
                         "text="), **where)


def encode_column(table, col: int, options: dict, fit_rows=None) -> tuple[np.ndarray, list[str]]:
    """(ids (N, length), vocabulary tokens) of column ``col``; the vocabulary is ``options["tokens"]``
    when given, else fitted on the rows ``fit_rows(N)`` (all rows when None)."""
    texts = [fields[col] for _, _, fields in table.rows]
    token_lists = [tokenize(t, options["tokenizer"], options["lowercase"]) for t in texts]
    tokens = options.get("tokens")
    if tokens is None:
        rows = range(len(token_lists)) if fit_rows is None else fit_rows(len(token_lists))
        tokens = fit_vocabulary((token_lists[int(r)] for r in rows), options["vocab"])
    return encode(token_lists, tokens, options["length"]), list(tokens)


def ignored_columns_note(table, used: set[int], what: str) -> list[str]:
    spare = [h for i, h in enumerate(table.header) if i not in used]
    if not spare:
        return []
    return [f"{table.path}: ignoring column{'s' if len(spare) > 1 else ''} {quoted_list(spare)}: {what} reads "
            "only its text column"]


def text_dataset(table, args: dict, target_col: int, y, labels, shown: str, span, spec_path,
                 info: DataInfo | None, fit_rows=None) -> Dataset:
    """A CSV's text column as token ids, with its targets ``y``: the vocabulary of ``info`` (a run's
    or the training source's), or fitted here on the rows ``fit_rows(N)`` (the training split)."""
    where = dict(span=span, path=spec_path) if span is not None else dict(path=shown)
    if info is not None and info.text is not None:
        options = {**inherited_options(args, info, shown, where), "tokens": list(info.text["tokens"])}
    else:
        options = options_of(args)
    col = text_column(table, options["column"], where, f'csv(text="{options["column"]}")')
    x, tokens = encode_column(table, col, options, None if options.get("tokens") is not None else fit_rows)
    text = {**{k: options[k] for k in OPTION_KEYS}, "tokens": tokens}
    notes = ignored_columns_note(table, {col, target_col}, "a text source")
    return Dataset(x, y, shown, labels, path=shown, kind="csv", target=table.header[target_col], notes=notes,
                   text=text)


def text_inputs(table, info: DataInfo, shown: str) -> Dataset:
    """Prediction inputs from a CSV with the run's text column (other columns ignored, with a note)."""
    options = {**{k: info.text[k] for k in OPTION_KEYS}, "tokens": list(info.text["tokens"])}
    col = text_column(table, options["column"], dict(path=shown), "the model")
    x, _ = encode_column(table, col, options)
    return Dataset(x, None, shown, path=shown, kind="csv", notes=ignored_columns_note(table, {col}, "the model"),
                   text={**{k: options[k] for k in OPTION_KEYS}, "tokens": options["tokens"]})
