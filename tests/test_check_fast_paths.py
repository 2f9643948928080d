"""The fast paths of `nnc check` against the general paths they stand in for.

- the parser's line-by-line lexer (``nnc.grammar.lalr.tokens``) against lark's own lexer over the
  whole text: the same tokens, types and positions;
- the parser's fast path (``lalr.run``) against lark's parser and tree, on every spec and on
  generated ones (``tests/test_fast_parser.py`` covers the hand-written and random inputs);
- the lowering's stage cache (``ModelPass.stage_cache``: a stage of literal arguments on inputs of
  the shapes and dtypes of one before is inferred once) against inferring every stage: the same IR,
  the same diagnostics.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from nnc.compiler import parse as P
from nnc.compiler.lower import Lowerer
from nnc.compiler.lowering.model import ModelPass
from nnc.errors import NncError
from nnc.grammar import get_parser, lalr, lex

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("**/*.nnspec")) + sorted((ROOT / "tests").glob("**/*.nnspec"))


def generated() -> dict[str, str]:
    """Large specs of repeated lines, as generators write them (the stage cache's best case)."""
    mlp = ["model big {", "    input x: [64]"]
    mlp += [f"    dense({32 + i % 32}) -> relu" for i in range(300)]
    conv = ["model c {", "    input img: [3, 32, 32]"]
    conv += ["    conv2d(8, 3, padding=\"same\") -> batchnorm -> relu"] * 40
    conv += ["    conv2d(8, 3, stride=2, padding=1) -> relu", "    maxpool2d(1)", "    flatten -> dense(10)"]
    named = ["let w = 16", "model n {", "    input x: [8]"]
    named += [f"    h{i} = dense(w, name=\"d{i}\") -> dropout(0.1)" for i in range(50)]
    named += ["    h50 = add(h48, h49) -> dense(w // 2) -> tanh", "    output h50"]
    seq = ["model s {", "    input t: int64 [12]", "    embedding(50, 16)"]
    seq += ["    lstm(16, return_sequences=true) -> layernorm"] * 20
    seq += ["    lstm(8) -> dense(2) -> softmax"]
    blocks = ["block res(c) {", "    h = dense(c) -> relu", "    g = dense(c)", "    add(h, g)", "}",
              "model r {", "    input x: [16]", "    dense(16)"]
    blocks += ["    res(16) -> res(16)", "    repeat 3 { res(16) }"] * 10
    bad = ["model e {", "    input x: [4]"] + ["    dense(4) -> conv2d(3, 3) -> relu"] * 5
    out = {"mlp": mlp, "conv": conv, "named": named, "seq": seq, "blocks": blocks, "bad": bad}
    near = "model big {\n    input x: [3]\n" + "dense(3) -> relu\n" * 2000 + "}\n"
    texts = {name: "\n".join(lines + ["}"]) + "\n" for name, lines in out.items()}
    texts["near_limit_shape"] = near
    texts["crlf_tabs_comments"] = near.replace("\n", "\r\n").replace("    ", "\t") + "# end\n"
    return texts


TEXTS = {f.relative_to(ROOT).as_posix(): f.read_text(encoding="utf-8", errors="replace") for f in SPECS}
TEXTS.update({f"<generated {k}>": v for k, v in generated().items()})


def lark_tokens(text: str) -> list | None:
    """lark's root lexer over the whole text: ``(type, (text, line, column, end_line, end_column))``."""
    from lark.exceptions import UnexpectedInput
    try:
        toks = [(t.type, (str(t), t.line, t.column, t.end_line, t.end_column))
                for t in lex(text) if t.type not in ("WS", "COMMENT")]
    except UnexpectedInput:
        return None
    return toks + [("$END", None)]


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_line_lexer_gives_the_whole_text_lexers_tokens(name):
    text = TEXTS[name]
    fast = lalr.tokens(text, lalr.tables())
    whole = lalr.tokens(text, {**lalr.tables(), "line_safe": False})  # the whole text at once
    slow = lark_tokens(text)
    if slow is None:
        assert fast is None and whole is None
    else:
        assert fast == slow and whole == slow


def test_the_grammar_may_be_lexed_by_lines():
    tables = {k: v for k, v in lalr.tables().items() if k != "line_safe"}
    assert lalr._line_safe(dict(tables)) and lalr.tables()["line_safe"]
    # a string that may hold a newline would make a token span lines: the whole text's lexer then
    multiline = tables["pattern"].replace("(?P<STRING>\"[^\"\n]*\"", "(?P<STRING>\"[^\"]*\"")
    assert multiline != tables["pattern"]
    assert not lalr._line_safe({**tables, "pattern": multiline})


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_fast_parser_builds_larks_tree(name):
    from lark.exceptions import UnexpectedInput
    text = TEXTS[name]
    fast = lalr.run(text, P.BUILDERS)
    try:
        slow = P._transform(get_parser()[0].parse(text))
    except UnexpectedInput:
        slow = None
    if fast is not lalr.FAILED:
        assert slow is not None and fast == slow
    elif name.startswith("<generated"):
        pytest.fail("a generated spec left to lark")


def lowered(text: str, cache: bool):
    """The IR dict, or the diagnostics (code, message, span, hint, notes) and warnings."""
    saved = ModelPass.stage_cache
    ModelPass.stage_cache = cache
    try:
        file = P.parse(text, "t.nnspec")
        lowerer = Lowerer("t.nnspec")
        try:
            program = lowerer.lower(file, text).to_dict()
        except NncError as err:
            return [(d.code, d.message, d.span, d.hint, [(n.message, n.span) for n in d.notes])
                    for d in err.diagnostics]
        return program, [(w.code, w.message, w.span, w.hint) for w in lowerer.warnings]
    finally:
        ModelPass.stage_cache = saved


def _parses(text: str) -> bool:
    try:
        P.parse(text, "t.nnspec")
        return True
    except NncError:
        return False


@pytest.mark.parametrize("name", sorted(n for n, t in TEXTS.items() if _parses(t)))
def test_stage_cache_gives_the_ir_of_inferring_every_stage(name):
    text = TEXTS[name]
    assert lowered(text, True) == lowered(text, False)


def test_stage_cache_is_used_and_its_lists_are_fresh():
    text = TEXTS["<generated conv>"]
    file = P.parse(text, "t.nnspec")
    lowerer = Lowerer("t.nnspec")
    program = lowerer.lower(file, text)
    assert len(lowerer.model.stages) < len(program.model.nodes) // 4
    convs = [n for n in program.model.nodes if n.op == "conv2d"]
    assert convs[1].attrs == convs[2].attrs and convs[1].attrs["pads"] is not convs[2].attrs["pads"]


def _records():
    import nnc.compiler.irtypes as I
    import nnc.compiler.lowering.blocks as B
    import nnc.compiler.lowering.context as C
    import nnc.lang.ast as AST
    import nnc.lang.types as T
    seen = []
    for mod in (AST, T, I, B, C):
        for obj in vars(mod).values():
            if isinstance(obj, type) and obj.__module__ == mod.__name__ and "__dataclass_fields__" in vars(obj):
                seen.append(obj)
    return seen


@pytest.mark.parametrize("cls", _records(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_record_init_is_the_dataclass_init(cls):
    """``nnc.record.record`` writes each ``__init__`` itself: the signature ``@dataclass`` would give,
    and the same instance from the same arguments (defaults and fresh default factories included)."""
    import dataclasses
    import inspect
    spec = []
    for f in dataclasses.fields(cls):
        kw = {"kw_only": f.kw_only}
        if f.default is not dataclasses.MISSING:
            kw["default"] = f.default
        if f.default_factory is not dataclasses.MISSING:
            kw["default_factory"] = f.default_factory
        spec.append((f.name, f.type, dataclasses.field(**kw)))
    ref = dataclasses.make_dataclass(cls.__name__, spec, eq=False, repr=False)
    assert str(inspect.signature(cls.__init__)) == str(inspect.signature(ref.__init__))
    required = {f.name: object() for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    post = getattr(cls, "__post_init__", None)
    if post is not None:
        return  # (Signature checks its parameters: its constructor runs in every other test)
    a, b = cls(**required), ref(**required)
    assert {f.name: getattr(a, f.name) for f in dataclasses.fields(cls)} == \
        {f.name: getattr(b, f.name) for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(cls(**required), f.name) is not getattr(a, f.name)
