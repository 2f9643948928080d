"""Positions: the compiler's spans (1-based lines, 1-based code-point columns) <-> the protocol's
(0-based lines, columns in the negotiated code units: UTF-16 unless the client offers another).

Lines are split at ``\\n`` only, as the compiler counts them (lark's line counter); a ``\\r`` before
it is part of the line's text, which changes no column before it. The protocol's default unit is
the UTF-16 code unit: a character outside the Basic Multilingual Plane (an emoji in a comment)
counts 2, an ``é`` counts 1; in UTF-8 they count 4 and 2.
"""
from __future__ import annotations

import bisect
import re

from ..errors import SourceSpan

_NEWLINE = re.compile("\n")


def _units(text: str, encoding: str) -> int:
    """How many code units of ``encoding`` (``utf-8``, ``utf-16`` or ``utf-32``) ``text`` takes."""
    if encoding == "utf-32" or text.isascii():
        return len(text)
    if encoding == "utf-8":
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


class TextIndex:
    """Line starts of one text, and conversions between offsets, spans and protocol positions."""

    def __init__(self, text: str, encoding: str = "utf-16"):
        self.text = text
        self.encoding = encoding
        self.starts = [0] + [m.end() for m in _NEWLINE.finditer(text)]

    # -- offsets <-> (line0, character column) ---------------------------------------------------
    def line_text(self, line0: int) -> str:
        if line0 >= len(self.starts):
            return ""
        end = self.starts[line0 + 1] - 1 if line0 + 1 < len(self.starts) else len(self.text)
        return self.text[self.starts[line0]:end]

    def offset(self, line0: int, char: int) -> int:
        """The offset of a (0-based line, code-point column), clamped to the text."""
        if line0 < 0:
            return 0
        if line0 >= len(self.starts):
            return len(self.text)
        return min(self.starts[line0] + max(char, 0), self.starts[line0] + len(self.line_text(line0)))

    def line_col(self, offset: int) -> tuple[int, int]:
        """(0-based line, code-point column) of an offset."""
        offset = max(0, min(offset, len(self.text)))
        line0 = bisect.bisect_right(self.starts, offset) - 1
        return line0, offset - self.starts[line0]

    # -- protocol positions ----------------------------------------------------------------------
    def to_client(self, line0: int, char: int) -> tuple[int, int]:
        """(line, code-unit column) of a (0-based line, code-point column)."""
        if line0 >= len(self.starts):
            line0 = len(self.starts) - 1
            char = len(self.line_text(line0))
        text = self.line_text(line0)
        return line0, _units(text[:max(char, 0)], self.encoding)

    def from_client(self, line: int, units: int) -> int:
        """The offset of a protocol position; a column past the line's end means the line's end,
        and one in the middle of a character (half a surrogate pair) the character's start."""
        if line < 0:
            return 0
        if line >= len(self.starts):
            return len(self.text)
        text = self.line_text(line)
        if text.isascii() or self.encoding == "utf-32":
            return self.starts[line] + min(max(units, 0), len(text))
        count = 0
        for i, ch in enumerate(text):
            width = _units(ch, self.encoding)
            if count + width > units:
                return self.starts[line] + i
            count += width
        return self.starts[line] + len(text)

    def span_range(self, span: SourceSpan | None) -> tuple[tuple[int, int], tuple[int, int]]:
        """The protocol range ((line, col), (end line, end col)) of a compiler span."""
        if span is None:
            return (0, 0), (0, 0)
        start = self.to_client(span.line - 1, span.column - 1)
        end = self.to_client(span.end_line - 1, span.end_column - 1)
        if end < start:
            end = start
        return start, end

    def span_offsets(self, span: SourceSpan) -> tuple[int, int]:
        return (self.offset(span.line - 1, span.column - 1), self.offset(span.end_line - 1, span.end_column - 1))

    def span_text(self, span: SourceSpan) -> str:
        a, b = self.span_offsets(span)
        return self.text[a:b]

    def end(self) -> tuple[int, int]:
        """The protocol position of the end of the text."""
        line0 = len(self.starts) - 1
        return self.to_client(line0, len(self.line_text(line0)))


def contains(span: SourceSpan, line: int, column: int) -> bool:
    """Whether the 1-based (line, column) is inside ``span`` (its end included: a cursor just after
    a name is on it, as editors expect)."""
    return (span.line, span.column) <= (line, column) <= (span.end_line, span.end_column)


def size(span: SourceSpan) -> tuple[int, int]:
    return (span.end_line - span.line, span.end_column - span.column if span.end_line == span.line
            else span.end_column)
