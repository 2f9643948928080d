"""CSV files: structure, numeric columns, targets and label columns, features matched by name."""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
import numpy as np
from nnc.errors import Diagnostic, NncError, SourceSpan

from .base import DataInfo, Dataset, _INT_RE, _MAX_FILE_ERRORS, _MISSING_MARKERS, _did_you_mean, _join_hints
from .labels import _numeric_trained_error, encode_labels, quoted_list, unknown_label_hint
from .text import text_dataset


@dataclass
class _Table:
    """A parsed CSV: the header and the data records, each with its physical lines."""

    path: str
    lines: list[str]                       # physical lines of the file, endings kept
    header: list[str]                      # stripped column names
    header_line: int
    rows: list[tuple[int, int, list[str]]]  # (first line, last line, fields) per data record

    def locate(self, first: int, last: int, field: int) -> SourceSpan:
        """The span of field ``field`` (0-based; may be one past the end) of a record."""
        raw = "".join(self.lines[first - 1:last])
        starts, ends = [0], []
        in_quotes = False
        for i, ch in enumerate(raw):
            if ch == '"':
                in_quotes = not in_quotes
            elif ch == "," and not in_quotes:
                ends.append(i)
                starts.append(i + 1)
        ends.append(len(raw.rstrip("\r\n")))
        if field >= len(starts):  # a missing field: point just past the end of the record
            start = end = ends[-1]
            end += 1
        else:
            start, end = starts[field], max(ends[field], starts[field] + 1)
        line, col = self._position(first, raw, start)
        end_line, end_col = self._position(first, raw, end)
        if end_line != line:
            end_line, end_col = line, col + 1
        return SourceSpan(line, col, end_line, end_col)

    @staticmethod
    def _position(first: int, raw: str, offset: int) -> tuple[int, int]:
        before = raw[:offset]
        breaks = [m.end() for m in re.finditer(r"\r\n|\r|\n", before)]
        if not breaks:
            return first, offset + 1
        return first + len(breaks), offset - breaks[-1] + 1

    def error(self, code: str, message: str, hint: str | None, first: int, last: int,
              field: int | None) -> Diagnostic:
        if field is None:
            line_text = self.lines[first - 1].rstrip("\r\n") if first <= len(self.lines) else ""
            span = SourceSpan(first, 1, first, max(2, len(line_text) + 1))
        else:
            span = self.locate(first, last, field)
        return Diagnostic(code, message, span, hint, self.path)


def _raise(diags: list[Diagnostic], source: str | None = None) -> None:
    if diags:
        err = NncError(diags)
        if source is not None:
            err.sources.update({d.path: source for d in diags if d.path})  # the renderer shows the line
        raise err


def _decode(data: bytes, shown: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise NncError.single("E703", f"{shown} is UTF-16 text; nnc reads UTF-8 CSV files",
                              hint="save it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`)",
                              span=SourceSpan(1, 1, 1, 2), path=shown)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[line_start:exc.start].decode("utf-8", errors="replace")) + 1
        bad = data[exc.start:exc.start + 1]
        raise NncError.single(
            "E703", f"{shown} is not valid UTF-8: byte 0x{bad.hex()} at line {line}, column {column}",
            hint="save the file as UTF-8 (e.g. `iconv -f latin1 -t UTF-8 in.csv > out.csv`)",
            span=SourceSpan(line, column, line, column + 1), path=shown) from None


def _is_blank(fields: list[str]) -> bool:
    return not fields or (len(fields) == 1 and not fields[0].strip())


def _parse_csv(data: bytes, shown: str) -> _Table:
    """Split a CSV file into header and records (all strings), checking its structure (E703)."""
    text = _decode(data, shown)
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(lines, strict=True)
    records: list[tuple[int, int, list[str]]] = []
    last = 0
    try:
        for fields in reader:
            first, last = last + 1, reader.line_num
            if not _is_blank(fields):
                records.append((first, last, fields))
    except csv.Error as exc:
        first = last + 1
        line = min(max(first, 1), max(len(lines), 1))
        raw = "".join(lines[first - 1:])
        quote = raw.find('"')
        span = SourceSpan(line, 1, line, 2)
        hint = 'a field that contains a comma or a quote must be quoted, with inner quotes doubled ("")'
        if quote >= 0:
            l2, c2 = _Table._position(first, raw, quote)
            span = SourceSpan(l2, c2, l2, c2 + 1)
        raise NncError.single("E703", f"malformed CSV near line {span.line}: {exc}",
                              hint=hint, span=span, path=shown) from None
    table_source = text
    if not records:
        raise NncError.single("E703", f"{shown} is empty", hint="a CSV needs a header row of column "
                              "names and then one row per example", span=SourceSpan(1, 1, 1, 2),
                              path=shown)
    h_first, h_last, header_fields = records[0]
    header = [h.strip() for h in header_fields]
    table = _Table(shown, lines, header, h_first, records[1:])
    _check_separator(table, table_source)
    # NOTE: all but one field numeric is a data row too (features, then a string label), not a header
    if sum(_parse_float(h) is not None for h in header) >= max(1, len(header) - 1):
        d = table.error("E703", f"{shown} has no header row: the first row holds numbers, "
                        f"not column names", "add a first row naming the columns, e.g. "
                        + ",".join(f"f{i + 1}" for i in range(min(len(header), 4)))
                        + (",..." if len(header) > 4 else ""), h_first, h_last, None)
        _raise([d], table_source)
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name and name in seen:
            d = table.error("E703", f'column "{name}" appears twice in the header '
                            f"(columns {seen[name] + 1} and {i + 1})",
                            "give every column a unique name", h_first, h_last, i)
            _raise([d], table_source)
        seen[name] = i
    diags = []
    for first, last, fields in table.rows:
        if len(fields) != len(header):
            hint = ("every row needs one value per header column; quote values that contain commas"
                    if len(fields) > len(header) else "every row needs one value per header column")
            diags.append(table.error(
                "E703", f"line {first} has {len(fields)} fields but the header has "
                f"{len(header)}", hint, first, last, min(len(fields), len(header))))
            if len(diags) >= _MAX_FILE_ERRORS:
                break
    _raise(diags, table_source)
    return table


_SEPARATORS = {";": ("semicolons", ";"), "\t": ("tabs", "\\t"), "|": ("'|' characters", "|")}


def _check_separator(table: _Table, source: str) -> None:
    """A header that is one column holding ``;``, tabs or ``|``: the file is not comma-separated
    (E703 with the command that converts it), whatever the target or the verb."""
    if len(table.header) != 1:
        return
    sep = next((s for s in _SEPARATORS if len(table.header[0].split(s)) > 1), None)
    if sep is None:
        return
    parts = len(table.header[0].split(sep))
    if table.rows and table.lines[table.rows[0][0] - 1].rstrip("\r\n").count(sep) + 1 != parts:
        return  # one column whose name happens to hold the character: the rows do not split so
    what, escaped = _SEPARATORS[sep]
    name = Path(table.path).name
    out = Path(name).stem + "_commas.csv"
    hint = (f"nnc reads comma-separated files; convert it, e.g. python -c \"import csv,sys; "
            f"csv.writer(sys.stdout).writerows(csv.reader(sys.stdin, delimiter='{escaped}'))\" "
            f"< {name} > {out}")
    decimal_commas = any(re.search(r"\d,\d", table.lines[first - 1]) for first, _, _ in table.rows[:20])
    if decimal_commas:
        hint += (f"; its numbers have decimal commas, so convert with pandas instead: "
                 f"pd.read_csv(\"{name}\", sep=\"{escaped}\", decimal=\",\").to_csv(\"{out}\", index=False)")
    d = table.error("E703", f"{table.path} is separated by {what}, not commas: its header is the one "
                    f"column {table.header[0]!r}", hint, table.header_line, table.header_line, None)
    _raise([d], source)


def _parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _cell_problem(table: _Table, first: int, last: int, col: int, value: str) -> Diagnostic:
    name = table.header[col] or f"#{col + 1}"
    if value.strip().lower() in _MISSING_MARKERS:
        shown_value = f" ({value.strip()!r})" if value.strip() else ""
        return table.error("E706", f'missing value{shown_value} in column "{name}" '
                           f"at line {first}", "fill in every value or drop the row; nnc does not "
                           "impute missing data", first, last, col)
    f = _parse_float(value)
    if f is not None and not math.isfinite(f):
        return table.error("E733", f'{value.strip()!r} in column "{name}" at line '
                           f"{first} is not a finite number", "replace NaN/infinite values or "
                           "drop the row", first, last, col)
    return table.error("E705", f'non-numeric value {value.strip()!r} in column '
                       f'"{name}" at line {first}',
                       "every column except the target must be numeric; encode categories as "
                       "numbers (e.g. one-hot columns) or make this column the target",
                       first, last, col)


def _numeric_columns(table: _Table, cols: list[int]) -> np.ndarray:
    """The given columns as float64 (rows, len(cols)); located E705/E706/E733 otherwise."""
    out = np.empty((len(table.rows), len(cols)), dtype=np.float64)
    diags: list[Diagnostic] = []
    for r, (first, last, fields) in enumerate(table.rows):
        try:
            out[r] = [float(fields[c]) for c in cols]
        except ValueError:
            for c in cols:
                if _parse_float(fields[c]) is None:
                    diags.append(_cell_problem(table, first, last, c, fields[c]))
                    if len(diags) >= _MAX_FILE_ERRORS:
                        _raise(diags, "".join(table.lines))
            continue
        if not np.isfinite(out[r]).all():
            for c, v in zip(cols, out[r]):
                if not math.isfinite(v):
                    diags.append(_cell_problem(table, first, last, c, fields[c]))
            if len(diags) >= _MAX_FILE_ERRORS:
                break
    _raise(diags, "".join(table.lines))
    return out



def _target_column(table: _Table, col: int, float_dtype,
                   info: DataInfo | None = None) -> tuple[np.ndarray, list[str] | None]:
    values = [fields[col] for _, _, fields in table.rows]
    diags = [_cell_problem(table, first, last, col, fields[col])
             for first, last, fields in table.rows
             if fields[col].strip().lower() in _MISSING_MARKERS][:_MAX_FILE_ERRORS]
    _raise(diags, "".join(table.lines))
    stripped = [v.strip() for v in values]
    known = info.labels if info is not None else None
    if known is not None and set(stripped) <= set(known):
        return encode_labels(stripped, known)[0], list(known)
    if all(_INT_RE.fullmatch(v) for v in values):
        ints = [int(v) for v in values]
        if all(-2**63 <= i < 2**63 for i in ints):
            return np.array(ints, dtype=np.int64), (list(known) if known is not None else None)
    floats = [_parse_float(v) for v in values]
    if known is None and all(f is not None for f in floats):
        y = _numeric_columns(table, [col])[:, 0]
        return y.astype(float_dtype), None
    name = table.header[col] or f"#{col + 1}"
    if info is not None and known is None:
        r = next(r for r, f in enumerate(floats) if f is None)
        first, last, _ = table.rows[r]
        err = _numeric_trained_error(f'the target column "{name}" holds labels (e.g. {stripped[r]!r} on line '
                                     f'{first})', info, span=table.locate(first, last, col), path=table.path)
        err.sources[table.path] = "".join(table.lines)
        raise err
    ids, labels, unknown = encode_labels(stripped, known)
    for label, r in list(unknown.items())[:_MAX_FILE_ERRORS]:
        first, last, _ = table.rows[r]
        count = stripped.count(label)
        diags.append(table.error(
            "E735", f'label "{label}" in column "{name}" at line {first} is not one of the '
            f"{len(known)} labels the model was trained on"
            + (f" ({count} rows hold it)" if count > 1 else ""), unknown_label_hint(label, info),
            first, last, col))
    _raise(diags, "".join(table.lines))
    return ids, labels


def _text_column_errors(table: _Table, cols: list[int], hint) -> list[Diagnostic]:
    """One E705 per column whose values are all text (a label or a name left in), at its header,
    instead of one per row. ``hint(name)`` says what to do in the caller's terms."""
    sample = table.rows[:50]
    diags = []
    for c in cols:
        filled = [(first, f[c].strip()) for first, _, f in sample if f[c].strip().lower() not in _MISSING_MARKERS]
        if filled and all(_parse_float(f[c]) is None for _, _, f in sample):
            name = table.header[c] or f"#{c + 1}"
            line, value = filled[0]
            diags.append(table.error("E705", f'{table.path}: column "{name}" is not numeric (e.g. "{value}" '
                                     f"on line {line})", hint(name), table.header_line, table.header_line, c))
    return diags


_INDEX_NAMES = ("", "Unnamed: 0")


def _index_column_error(table: _Table, cols: list[int]) -> Diagnostic | None:
    """pandas' ``df.to_csv(path)`` writes the row index as a first column without a name (read back
    and written again, it is called "Unnamed: 0"): a feature that is only the row number."""
    if not cols or cols[0] != 0 or table.header[0] not in _INDEX_NAMES or not table.rows:
        return None
    values = [f[0] for _, _, f in table.rows]
    if not all(_INT_RE.fullmatch(v) for v in values):
        return None
    ints = [int(v) for v in values]
    if any(b <= a for a, b in zip(ints, ints[1:])):
        return None
    shown_name = f'"{table.header[0]}"' if table.header[0] else "no name"
    return table.error(
        "E737", f"{table.path}: the first column has {shown_name} and holds the row numbers "
        f"{', '.join(map(str, ints[:3]))}{', ...' if len(ints) > 3 else ''}: it is a pandas index, not a feature",
        "write the file with df.to_csv(path, index=False), or drop the column, e.g. "
        "pd.read_csv(path, index_col=0).to_csv(path, index=False)",
        table.header_line, table.header_line, 0)


def _select_features(table: _Table, exclude: set[int], info: DataInfo | None) -> tuple[list[int], list[str]]:
    """The feature columns (indices, in the model's order) and notes about ignored columns.

    With the training columns (``info.features``) they are matched by name: any order, extra
    columns ignored (a note), a missing one E736 naming it. Otherwise every column not excluded,
    in file order.
    """
    header = table.header
    candidates = [i for i in range(len(header)) if i not in exclude]
    if info is None or info.features is None:
        return candidates, []
    index = {h: i for i, h in enumerate(header) if i not in exclude}
    wanted = set(info.features)
    spare = [header[i] for i in candidates if header[i] not in wanted]
    diags = []
    for name in info.features:
        if name not in index:
            diags.append(table.error(
                "E736", f'{table.path} has no column "{name}", a feature the model was trained on; its columns '
                f"are: {quoted_list(header, 20)}",
                _join_hints(_did_you_mean(name, spare), f"the model reads the columns {quoted_list(info.features)} "
                            f"(from {info.where()}) by name, in any order; other columns are ignored"),
                table.header_line, table.header_line, None))
            if len(diags) >= _MAX_FILE_ERRORS:
                break
    _raise(diags, "".join(table.lines))
    notes = []
    if spare:
        notes.append(f"{table.path}: ignoring column{'s' if len(spare) > 1 else ''} {quoted_list(spare)}: "
                     f"not among the {len(info.features)} the model was trained on")
    return [index[name] for name in info.features], notes


def _train_text_hint(name: str) -> str:
    return (f'every column except the target must be numeric: encode "{name}" as numbers (e.g. one-hot '
            f'columns), drop it, or make it the target (target="{name}")')


def _csv_dataset(table: _Table, target: str | None, shown: str, float_dtype, span,
                 spec_path, info: DataInfo | None = None, args: dict | None = None, fit_rows=None) -> Dataset:
    header = table.header
    source = "".join(table.lines)
    is_text = bool(args and args.get("text") is not None) or (info is not None and info.text is not None)
    if target is None and info is not None and info.target and (info.features is not None or is_text):
        target = info.target  # the training column, not "the last one", when the run remembers it
        if target not in header:
            d = table.error("E704", f'{shown} has no column "{target}", the target the model was trained on; '
                            f"its columns are: {quoted_list(header, 20)}",
                            _join_hints(_did_you_mean(target, header),
                                        'name the target column: csv("file.csv", target="<column>")'),
                            table.header_line, table.header_line, None)
            _raise([d], source)
    if target is None:
        col = len(header) - 1
    elif target in header:
        col = header.index(target)
    else:
        hint = _did_you_mean(target, header)
        message = (f'{shown} has no column "{target}"; its columns are: '
                   + ", ".join(f'"{h}"' for h in header))
        if span is not None:
            raise NncError.single("E704", message, hint=_join_hints(hint, f"check target= (the file "
                                  f"is {shown})"), span=span, path=spec_path)
        d = table.error("E704", message, _join_hints(hint, "pass target=\"<column>\""),
                        table.header_line, table.header_line, None)
        _raise([d], source)
    if is_text:
        if not table.rows:
            d = table.error("E734", f"{shown} has a header but no data rows",
                            "add one row per example below the header", table.header_line,
                            table.header_line, None)
            _raise([d], source)
        y, labels = _target_column(table, col, float_dtype, info)
        return text_dataset(table, args or {}, col, y, labels, shown, span, spec_path, info, fit_rows)
    features, notes = _select_features(table, {col}, info)
    if not features:
        d = table.error("E703", f"{shown} has no feature columns: its only column is the target "
                        f'"{header[col]}"', "add one column per input feature", table.header_line,
                        table.header_line, None)
        _raise([d], source)
    if not table.rows:
        d = table.error("E734", f"{shown} has a header but no data rows",
                        "add one row per example below the header", table.header_line,
                        table.header_line, None)
        _raise([d], source)
    index = _index_column_error(table, features)
    _raise(([index] if index else []) + _text_column_errors(table, features, _train_text_hint), source)
    x = _numeric_columns(table, features)
    y, labels = _target_column(table, col, float_dtype, info)
    return Dataset(x.astype(float_dtype), y, shown, labels, path=shown, kind="csv",
                   features=[header[c] for c in features], target=header[col], notes=notes)
