"""``nnc.record.record`` against ``dataclasses.dataclass``: each case is one class body, decorated
both ways, and the two classes must behave the same for what nnc relies on (fields, ``__init__``
signature and defaults, fresh default factories, ``__post_init__``, repr, equality, hashing, frozen
assignment, slots, ``__match_args__``, ``replace``, and :mod:`dataclasses`' own functions on a
record). The compiler's records are held to their dataclass twins in ``test_check_fast_paths``."""
from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import subprocess
import sys
from typing import ClassVar

import pytest

from nnc import record as R

BODIES = {
    "plain": """
class C:
    a: int
    b: str = "x"
    c: list = field(default_factory=list)
""",
    "kw_only_slots": """
class C:
    a: int
    b: float = 1.5
    c: dict = field(default_factory=dict)
    d: int = 0
""",
    "hidden": """
class C:
    a: int
    b: int = field(default=3, repr=False)
    c: int = field(default=4, compare=False)
""",
    "post_init": """
class C:
    a: int
    b: int = 2
    def __post_init__(self):
        self.total = self.a + self.b
""",
    "classvar": """
class C:
    a: int
    k: ClassVar[int] = 9
    b: int = 1
""",
    "own_methods": """
class C:
    a: int
    def __repr__(self):
        return "mine"
    def __eq__(self, other):
        return True
    __hash__ = None
""",
    "frozen": """
class C:
    line: int = 1
    column: int = 1
    def moved(self):
        return type(self)(self.line + 1, self.column)
""",
}

OPTIONS = {
    "plain": {},
    "kw_only_slots": {"kw_only": True, "slots": True, "eq": False},
    "hidden": {},
    "post_init": {},
    "classvar": {},
    "own_methods": {},
    "frozen": {"frozen": True},
}


def _build(body: str, decorate, field):
    # (in this module's name: @dataclass finds `ClassVar` in the class's module, as nnc's would)
    ns = {"field": field, "ClassVar": ClassVar, "__name__": __name__}
    exec("from __future__ import annotations\n" + body, ns)
    return decorate(ns["C"])


def pair(case: str):
    opts = OPTIONS[case]
    ours = _build(BODIES[case], R.record(**opts), R.field)
    ref = _build(BODIES[case], dataclasses.dataclass(**opts), dataclasses.field)
    return ours, ref


def required(cls) -> dict:
    return {f.name: 7 for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


@pytest.mark.parametrize("case", list(BODIES))
def test_fields_and_signature(case):
    ours, ref = pair(case)
    assert str(inspect.signature(ours.__init__)) == str(inspect.signature(ref.__init__))
    assert [(f.name, f.type, f.repr, f.compare, f.kw_only) for f in R.fields(ours)] == \
        [(f.name, f.type, f.repr, f.compare, f.kw_only) for f in dataclasses.fields(ref)]
    # dataclasses' own functions see a record's fields too
    assert [(f.name, f.default, f.default_factory) for f in dataclasses.fields(ours)] == \
        [(f.name, f.default, f.default_factory) for f in dataclasses.fields(ref)]
    assert dataclasses.is_dataclass(ours)
    assert ours.__match_args__ == ref.__match_args__
    assert (ours.__doc__ == "C") == (ref.__doc__.startswith("C("))  # no docstring: a name


@pytest.mark.parametrize("case", list(BODIES))
def test_instances_behave_alike(case):
    ours, ref = pair(case)
    args = required(ref)
    a, b = ours(**args), ref(**args)
    assert repr(a) == repr(b)
    assert vars(a) == vars(b) if hasattr(b, "__dict__") else \
        all(getattr(a, n) == getattr(b, n) for n in ref.__slots__)
    assert (a == ours(**args)) == (b == ref(**args))
    assert (ours.__hash__ is None) == (ref.__hash__ is None)
    if ref.__hash__ is not None and OPTIONS[case].get("frozen"):
        assert hash(a) == hash(ours(**args)) and {a: 1}[ours(**args)] == 1
    for f in dataclasses.fields(ref):  # a fresh default per instance
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(ours(**args), f.name) is not getattr(a, f.name)
    changed = dataclasses.fields(ref)[0].name
    assert repr(R.replace(a, **{changed: 11})) == repr(dataclasses.replace(b, **{changed: 11}))
    assert repr(dataclasses.replace(a, **{changed: 11})) == repr(dataclasses.replace(b, **{changed: 11}))
    assert dataclasses.asdict(a) == dataclasses.asdict(b)


def test_equality_compares_the_compared_fields_of_the_same_class():
    ours, ref = pair("hidden")
    for cls in (ours, ref):
        assert cls(1, 3, 4) == cls(1, 3, 99)     # c: compare=False
        assert cls(1, 3, 4) != cls(1, 5, 4)
        assert cls(1).__eq__(object()) is NotImplemented


def test_frozen_refuses_assignment_and_is_hashable():
    ours, ref = pair("frozen")
    for cls, error in ((ours, R.FrozenInstanceError), (ref, dataclasses.FrozenInstanceError)):
        x = cls(3, 4)
        with pytest.raises(error):
            x.line = 5
        with pytest.raises(error):
            del x.column
        assert isinstance(error(), AttributeError)
        assert x.moved() == cls(4, 4) and hash(x) == hash(cls(3, 4))
        assert copy.deepcopy(x) == x and copy.copy(x) == x
    from nnc.errors import SourceSpan  # a frozen record at module level pickles
    assert pickle.loads(pickle.dumps(SourceSpan(1, 2, 3, 4))) == SourceSpan(1, 2, 3, 4)


def test_slots_have_no_dict():
    ours, ref = pair("kw_only_slots")
    for cls in (ours, ref):
        x = cls(a=1)
        assert not hasattr(x, "__dict__") and cls.__slots__ == ("a", "b", "c", "d")
        with pytest.raises(AttributeError):
            x.other = 1
        with pytest.raises(TypeError):
            cls(1)  # keyword-only


def test_post_init_runs_last():
    ours, ref = pair("post_init")
    assert ours(1, 5).total == ref(1, 5).total == 6


def test_inheritance_keeps_base_fields_first():
    base_src = "class C:\n    a: int\n    b: int = 2\n"
    for record, field in ((R.record, R.field), (dataclasses.dataclass, dataclasses.field)):
        base = _build(base_src, record, field)
        sub = record(type("D", (base,), {"__annotations__": {"c": "int", "a": "int"}, "c": 5, "a": 1}))
        assert [f.name for f in (R.fields(sub) if record is R.record else dataclasses.fields(sub))] == ["a", "b", "c"]
        assert sub().a == 1 and sub().c == 5


@pytest.mark.parametrize("body, error", [
    ("class C:\n    a: int = 1\n    b: int\n", TypeError),          # required after a default
    ("class C:\n    a: list = []\n", ValueError),                   # a mutable default
])
def test_the_same_definition_errors(body, error):
    for record, field in ((R.record, R.field), (dataclasses.dataclass, dataclasses.field)):
        with pytest.raises(error):
            _build(body, record, field)
    with pytest.raises(ValueError):
        R.field(default=1, default_factory=list)
    with pytest.raises(TypeError):
        R.record(frozen=True, slots=True)  # (not supported: refused, never half-working)


def test_the_checker_does_not_import_dataclasses():
    """The point of records: ``nnc check`` runs without :mod:`dataclasses` (and :mod:`inspect`);
    nor does it import :mod:`typing` (annotations only name it under ``TYPE_CHECKING``)."""
    code = ("import sys\nfrom nnc.cli import main\n"
            "try:\n    main(['check', 'specs/digits_cnn.nnspec'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('dataclasses', 'inspect', 'typing', 'numpy', 'pydantic') if m in sys.modules))")
    from pathlib import Path
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
