"""The language reference's op tables follow the catalogue: a new op, or a new parameter of an op,
that is not documented in docs/language.md fails here (the catalogue drives the docs, not memory)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from nnc.compiler.ops import OPS

DOC = Path(__file__).resolve().parents[1] / "docs" / "language.md"


def _rows() -> dict[str, str]:
    """op name -> its table row, from every table of section 6 whose first column is `op`."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## 6. Ops"):text.index("\n## 7.")]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `([a-z0-9_]+)` \|(.*)", line)
        if m:
            rows.setdefault(m.group(1), line)
    return rows


ROWS = _rows()


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_has_a_row_naming_its_parameters(name):
    assert name in ROWS, f"docs/language.md section 6 has no table row for `{name}`"
    row = ROWS[name]
    for p in OPS[name].sig.params:
        assert re.search(rf"\b{p.name}\b", row), f"the row of `{name}` does not mention its parameter `{p.name}`"


def test_the_tables_document_no_op_that_does_not_exist():
    assert set(ROWS) <= set(OPS), f"documented but not in the catalogue: {set(ROWS) - set(OPS)}"
