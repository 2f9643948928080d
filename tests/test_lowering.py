"""The lowering's own invariants: the ``Lowerer``'s state is all declared up front."""
from __future__ import annotations

from pathlib import Path

import pytest

from nnc.compiler.lower import Lowerer
from nnc.compiler.parse import parse
from nnc.errors import NncError

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nnspec")) + sorted((ROOT / "tests" / "errors").glob("*.nnspec"))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_lowerer_state_is_declared_in_init(spec):
    """Lowering creates no attribute that ``Lowerer.__init__`` did not declare."""
    data = spec.read_bytes()
    try:
        file = parse(data, spec.name)
    except NncError:
        pytest.skip("a syntax error: nothing is lowered")
    lowerer = Lowerer(spec.name)
    declared = set(vars(lowerer))
    text = data.decode("utf-8", "replace").lstrip("\ufeff")
    try:
        lowerer.lower(file, text)
    except NncError:
        pass
    assert set(vars(lowerer)) == declared
