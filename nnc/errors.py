"""Diagnostics: source spans, error records, rendering, and the one exception type for user errors.

Every error a user can cause — in a spec, a data file, a weights file, a command-line value — is an
:class:`NncError` carrying one or more :class:`Diagnostic` records. The CLI renders them as text,
JSON or GitHub workflow annotations (see ``docs/errors.md`` for the codes). Anything else that
escapes is a bug in nnc.

A warning (``severity="warning"``, code ``Wnnn``) is a diagnostic about a spec that compiles but
probably does not mean what it says. It never makes a command fail: a spec with warnings only is
returned with them (``check_source(..., warnings=[])``, ``Program.warnings``); a spec with errors
raises an NncError that carries its warnings too, so that both are shown in source order.

Positions are 1-based. ``end_column`` is exclusive: it is the column just after the last
character of the span, as in lark and most editors' ranges.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from .record import field, record


def did_you_mean(word, choices, *, quote: str = "`") -> str | None:
    """"did you mean `x`?" for the closest of ``choices`` (one equal but for case first), or None."""
    if not isinstance(word, str):
        return None
    choices = [c for c in choices if isinstance(c, str)]
    match = {c.lower(): c for c in choices}.get(word.lower())
    if match is None:
        import difflib  # NOTE: only on the error path: `nnc check` of a good spec never loads it
        close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
        match = close[0] if close else None
    return f"did you mean {quote}{match}{quote}?" if match is not None else None


def plural(n: int, word: str) -> str:
    """``1 epoch``, ``1,797 rows``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def fmt_shape(shape) -> str:
    """A per-example shape as the spec writes it: ``[16, 4, 4]``."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


@record(frozen=True)
class SourceSpan:
    """A range in a source file: 1-based lines and columns, ``end_column`` exclusive."""

    line: int = 1
    column: int = 1
    end_line: int = 1
    end_column: int = 2

    @staticmethod
    def of(meta) -> "SourceSpan":
        """The span of a lark tree's ``meta`` (or a token), tolerant of empty metas."""
        line = getattr(meta, "line", None)
        if line is None:
            return SourceSpan()
        column = getattr(meta, "column", 1) or 1
        end_line = getattr(meta, "end_line", line) or line
        end_column = getattr(meta, "end_column", column + 1) or column + 1
        return SourceSpan(line, column, end_line, end_column)

    def to(self, other: "SourceSpan") -> "SourceSpan":
        """The span from the start of ``self`` to the end of ``other``."""
        return SourceSpan(self.line, self.column, other.end_line, other.end_column)

    def as_dict(self) -> dict:
        return {"line": self.line, "column": self.column, "end_line": self.end_line,
                "end_column": self.end_column}


NO_SPAN = SourceSpan()


@record
class Diagnostic:
    """One error (or warning) with its location, stable code, message and hint."""

    code: str
    message: str
    span: SourceSpan | None = None
    hint: str | None = None
    path: str | None = None
    severity: str = "error"
    # where else it matters, innermost first: the block use that expanded the body it is in
    notes: list[Note] = field(default_factory=list)

    def as_dict(self) -> dict:
        span = self.span or NO_SPAN
        out = {
            "path": self.path,
            "line": span.line,
            "column": span.column,
            "end_line": span.end_line,
            "end_column": span.end_column,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "notes": [n.as_dict() for n in self.notes],
        }
        return out


@record
class Note:
    """A secondary location of a diagnostic: ``note: in the use of block `basic` at line 12 ...``."""

    message: str
    span: SourceSpan | None = None

    def as_dict(self) -> dict:
        span = self.span or NO_SPAN
        return {"message": self.message, "line": span.line, "column": span.column,
                "end_line": span.end_line, "end_column": span.end_column}


class NncError(Exception):
    """The one exception type for errors the user can fix. Carries every diagnostic found."""

    def __init__(self, diagnostics: Diagnostic | Sequence[Diagnostic]):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        # path -> the text its diagnostics point into (a spec, a data file, a --set value), so that a
        # renderer can show the offending line; filled by whoever read that text
        self.sources: dict[str, str] = {}
        super().__init__("\n".join(f"[{d.code}] {d.message}" for d in self.diagnostics))

    @classmethod
    def single(cls, code: str, message: str, *, hint: str | None = None,
               span: SourceSpan | None = None, path: str | None = None) -> "NncError":
        return cls(Diagnostic(code, message, span, hint, path))

    def with_path(self, path: str | None, source: str | None = None) -> "NncError":
        """Fill in the path (and keep the source for rendering) where a diagnostic lacks one."""
        for d in self.diagnostics:
            if d.path is None:
                d.path = path
        if source is not None and path is not None:
            self.sources.setdefault(path, source)
        return self


@record
class DiagnosticSink:
    """Collects diagnostics across passes; raises them all at once (sqlglot's ErrorLevel.RAISE)."""

    path: str | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, code: str, message: str, span: SourceSpan | None, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, hint, self.path))

    def warning(self, code: str, message: str, span: SourceSpan | None, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, hint, self.path, severity="warning"))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity != "error"]

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        for d in diagnostics:
            if d.path is None:
                d.path = self.path
            self.diagnostics.append(d)

    def __bool__(self) -> bool:
        """Whether an error was found (warnings do not count)."""
        return any(d.severity == "error" for d in self.diagnostics)

    def raise_if_any(self) -> None:
        """Raise every diagnostic (errors and warnings) if there is an error; else keep them."""
        if self.diagnostics:
            seen: set = set()
            unique = []
            for d in self.diagnostics:  # a failed check inside `repeat` is reported once, not per pass
                key = (d.code, d.message, d.span)
                if key not in seen:
                    seen.add(key)
                    unique.append(d)
            self.diagnostics = unique
            self.diagnostics.sort(key=lambda d: ((d.span or NO_SPAN).line, (d.span or NO_SPAN).column))
        if self:
            raise NncError(self.diagnostics)


# ----------------------------------------------------------------------------------------------
# rendering

def _source_line(source: str | None, line: int) -> str | None:
    if source is None or line < 1:
        return None
    lines = source.split("\n")
    if line > len(lines):
        return None
    return lines[line - 1].rstrip("\r")


def render_text(diag: Diagnostic, source: str | None = None) -> str:
    """``path:line:col: error[CODE]: message``, the source line, a caret span and the hint."""
    span = diag.span
    where = diag.path or "<input>"
    if span is not None:
        where = f"{where}:{span.line}:{span.column}"
    out = [f"{where}: {diag.severity}[{diag.code}]: {diag.message}"]
    text = _source_line(source, span.line) if span is not None else None
    if text is not None:
        # NOTE: tabs are expanded to single spaces so the caret stays under the right character.
        shown = text.replace("\t", " ")
        if len(shown) > 200:  # a megabyte-long line is not printed whole
            start = max(0, span.column - 60)
            shown = shown[start:start + 160]
            col0 = span.column - 1 - start
        else:
            col0 = span.column - 1
        width = (span.end_column - span.column) if span.end_line == span.line else len(shown) - col0
        width = max(1, min(width, max(1, len(shown) - col0)))
        out.append("    " + shown)
        out.append("    " + " " * max(0, col0) + "^" * width)
    for note in diag.notes:
        out.append(f"  note: {note.message}")
    if diag.hint:
        out.append(f"  hint: {diag.hint}")
    return "\n".join(out)


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_github(diag: Diagnostic) -> str:
    """A GitHub Actions workflow annotation (``::error file=...,line=...,col=...::message``)."""
    span = diag.span or NO_SPAN
    props = [f"file={_gh_escape(diag.path or '', True)}", f"line={span.line}", f"col={span.column}",
             f"endLine={span.end_line}", f"endColumn={span.end_column}",
             f"title={_gh_escape(diag.code, True)}"]
    message = f"[{diag.code}] {diag.message}"
    for note in diag.notes:
        message += f"\nnote: {note.message}"
    if diag.hint:
        message += f"\nhint: {diag.hint}"
    level = "error" if diag.severity == "error" else "warning"
    return f"::{level} {','.join(props)}::{_gh_escape(message)}"


def render_json(diagnostics: Sequence[Diagnostic], files_checked: int) -> str:
    import json  # NOTE: only for --format json: `nnc check` of a good spec never loads it
    return json.dumps({"files_checked": files_checked,
                       "diagnostics": [d.as_dict() for d in diagnostics]}, indent=2)
