"""The lowering's own invariants: the state of the ``Lowerer``, its context and its passes is declared
up front, and the IR dataclasses it builds (``nnc.compiler.irtypes``) mirror the pydantic IR
(``nnc.compiler.ir``)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nnc.compiler.lower import Lowerer, check_source
from nnc.compiler.parse import parse
from nnc.errors import NncError

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nnspec")) + sorted((ROOT / "tests" / "errors").glob("*.nnspec"))


def _parses(spec: Path) -> bool:
    try:
        parse(spec.read_bytes(), spec.name)
        return True
    except NncError:
        return False


# NOTE: specs with a syntax error are left out: nothing of them reaches the lowering
LOWERED = [s for s in SPECS if _parses(s)]


def _state(lowerer: Lowerer) -> dict[str, set[str]]:
    """The attributes of the ``Lowerer`` and of the context and passes it holds (every object of
    ``nnc.compiler.lowering`` among its attributes), by name."""
    state = {"Lowerer": set(vars(lowerer))}
    for name, obj in vars(lowerer).items():
        if type(obj).__module__.startswith("nnc.compiler.lowering."):
            state[name] = set(vars(obj))
    return state


def test_the_passes_are_found():
    assert set(_state(Lowerer("x"))) == {"Lowerer", "ctx", "model", "outputs", "train", "top"}


@pytest.mark.parametrize("spec", LOWERED, ids=lambda p: p.name)
def test_lowerer_state_is_declared_in_init(spec):
    """Lowering creates no attribute that the ``__init__`` of ``Lowerer``, of its context or of its
    passes did not declare."""
    data = spec.read_bytes()
    file = parse(data, spec.name)
    lowerer = Lowerer(spec.name)
    declared = _state(lowerer)
    text = data.decode("utf-8", "replace").lstrip("\ufeff")
    try:
        lowerer.lower(file, text)
    except NncError:
        pass
    assert _state(lowerer) == declared


# ----------------------------------------------------------------------------------------------
# the lowering's dataclasses mirror the pydantic IR

def _pairs():
    from nnc.compiler import ir, irtypes
    from nnc.errors import SourceSpan
    pairs = [(getattr(ir, cls.__name__), cls) for cls in irtypes.IR_TYPES]
    return pairs + [(ir.Span, SourceSpan)]


def _dataclass_default(f):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return REQUIRED_FIELD


def _pydantic_default(info):
    return REQUIRED_FIELD if info.is_required() else info.get_default(call_default_factory=True)


REQUIRED_FIELD = object()


@pytest.mark.parametrize("model,cls", _pairs(), ids=lambda c: c.__name__)
def test_ir_dataclasses_mirror_the_pydantic_models(model, cls):
    """Same fields in the same order with the same defaults: the dict the lowering builds is the
    one the pydantic IR validates, and neither can gain a field the other lacks."""
    fields = dataclasses.fields(cls)
    assert [f.name for f in fields] == list(model.model_fields), cls.__name__
    if cls.__name__ == "SourceSpan":
        return  # the lowering always gives every span; SourceSpan's own defaults are not the IR's
    for f in fields:
        assert _dataclass_default(f) == _pydantic_default(model.model_fields[f.name]), f"{cls.__name__}.{f.name}"


def test_the_ir_version_is_declared_once():
    from nnc.compiler import ir, irtypes
    assert ir.IR_VERSION is irtypes.IR_VERSION


@pytest.mark.parametrize("spec", sorted((ROOT / "specs").glob("*.nnspec")), ids=lambda p: p.name)
def test_the_lowered_dict_is_the_validated_ir(spec):
    """What ``check_source`` returns is exactly what the pydantic IR holds after validating it."""
    from nnc.compiler.ir import Program
    program = check_source(spec.read_text(), spec.name)
    assert Program.model_validate(program).model_dump() == program


def test_the_catalogue_describes_weights_with_the_ir_type():
    """One representation of a weight from the op catalogue to the IR."""
    from nnc.compiler.irtypes import Weight
    from nnc.compiler.ops import OPS
    a = {"units": 4, "return_sequences": False, "bidirectional": False, "layers": 1, "dropout": 0.0,
         "init": {"kind": "zeros"}, "recurrent_init": {"kind": "zeros"}}
    OPS["lstm"].infer([(5, 3)], a)      # the shape rule sets the derived attributes (suffixes), as lowering does
    weights = OPS["lstm"].weights([(5, 3)], a)
    assert all(type(w) is Weight for w in weights)
    assert [(w.name, w.shape, w.blocks) for w in weights] == [
        ("weight_ih", [16, 3], 4), ("weight_hh", [16, 4], 4), ("bias_ih", [16], 4), ("bias_hh", [16], 4)]


def _ir_objects(obj):
    """Every IR dataclass reachable from ``obj`` (spans excluded)."""
    from nnc.compiler.irtypes import IR_TYPES
    if isinstance(obj, IR_TYPES):
        yield obj
        for f in dataclasses.fields(obj):
            yield from _ir_objects(getattr(obj, f.name))
    elif isinstance(obj, list):
        for x in obj:
            yield from _ir_objects(x)


def test_to_dict_gives_every_field_in_order():
    """``to_dict`` is written out per class (for speed); its keys are the fields, in order, for every
    IR type the example specs lower into."""
    from nnc.compiler.irtypes import IR_TYPES
    seen = set()
    for spec in sorted((ROOT / "specs").glob("*.nnspec")):
        text = spec.read_text()
        program = Lowerer(spec.name).lower(parse(text, spec.name), text)
        for obj in _ir_objects(program):
            assert list(obj.to_dict()) == [f.name for f in dataclasses.fields(obj)], type(obj).__name__
            seen.add(type(obj))
    assert seen == set(IR_TYPES)
