"""Completion: what may be written at the cursor, from the tokens before it.

The text being typed rarely parses, so the context is read from the grammar's own tokens up to the
cursor (a character the lexer refuses is skipped): the blocks around the cursor (``model``,
``block``, ``repeat``, ``train``), the calls and lists it is inside, the keyword argument or train
key whose value it is, and the last token before the word being typed. Names in scope come from
the analysis (the tree before a syntax error, when there is one).

- in a call's parentheses: its keyword parameters not given yet (an op's, a block's, a loss's ...),
  the constants and values in scope; after ``param=`` the values that parameter takes;
- after ``->`` (or at the start of a statement): ops and blocks (and at a statement's start the
  values in scope and the statement keywords);
- in the train block: the keys not given yet; after ``key =`` the values the key takes (losses,
  optimizers, schedules, metrics, data sources, booleans) and the constants;
- at the top level: ``let``, ``block``, ``model``, ``train``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lark.exceptions import UnexpectedCharacters
from lsprotocol import types as T

from ..compiler.ops import OPS
from ..compiler.trainspec import TRAIN_KEYS
from ..grammar import lex
from ..lang.types import REQUIRED, Bool, Catalogue, Enum, ListOf, OneOf, Padding, Signature, Type
from .analysis import Analysis, signature_for
from .features import block_header
from .positions import TextIndex

MAX_COMPLETION_TEXT = 1 << 20   # beyond the compiler's size limit nothing is offered
STATEMENT_KEYWORDS = ("let", "repeat", "assert")
MODEL_KEYWORDS = ("input", "output")
TOP_KEYWORDS = ("let", "block", "model", "train")
QUANTITIES = ("params", "flops", "output", "shape")


@dataclass
class Frame:
    """An open ``(`` or ``[``."""

    bracket: str                       # "(" or "["
    callee: str | None = None          # the name before "("
    signature: Signature | None = None
    block: str | None = None           # the block whose use this is
    expected: Type | None = None       # the type of the value this bracket is part of
    given: set[str] = field(default_factory=set)  # keyword arguments written so far
    keyword: str | None = None         # the keyword argument whose value is being written
    positional: int = 0                # positional arguments before the cursor
    header: bool = False               # a block definition's parameter list


@dataclass
class Context:
    braces: list[str]                  # model | block | train | repeat | ? (innermost last)
    frames: list[Frame]
    prev: tuple[str, str] | None       # (type, text) of the token before the word at the cursor
    prev2: tuple[str, str] | None
    key: str | None                    # the train key whose value is being written
    keys_given: set[str]
    prefix: str                        # the part of a name before the cursor
    let: bool = False                  # the value of a `let` is being written


def _tokens(text: str):
    """(type, value, start, end) of every token of ``text`` but white space and comments; a
    character the lexer refuses is skipped."""
    out = []
    base = 0
    while base <= len(text):
        try:
            for tok in lex(text[base:]):
                if tok.type not in ("WS", "COMMENT"):
                    out.append((tok.type, str(tok), base + tok.start_pos, base + tok.end_pos))
            return out
        except UnexpectedCharacters as exc:
            base += exc.pos_in_stream + 1
    return out


def _in_string_or_comment(line: str) -> bool:
    quote = None
    for ch in line:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return True
    return quote is not None


def context_at(analysis: Analysis, text: str, offset: int) -> Context | None:
    head = text[:offset]
    line = head[head.rfind("\n") + 1:]
    if _in_string_or_comment(line):
        return None
    toks = _tokens(head)
    prefix = ""
    if toks and toks[-1][3] == offset and toks[-1][0] == "NAME":
        prefix = toks[-1][1]
        toks = toks[:-1]
    braces: list[str] = []
    frames: list[Frame] = []
    header: str | None = None
    key: str | None = None
    keys_given: set[str] = set()
    for i, (kind, value, _, _) in enumerate(toks):
        prev = toks[i - 1][1] if i else None
        if value in ("model", "train", "block", "repeat") and not frames:
            header = value
        elif value == "{":
            braces.append(header or "?")
            header = None
            key = None
        elif value == "}":
            if braces:
                braces.pop()
            key = None
        elif value == "(":
            callee = toks[i - 1][1] if i and toks[i - 1][0] == "NAME" else None
            frame = Frame("(", callee, header=header == "block" and not frames)
            _resolve_callee(analysis, frame, frames, braces, key)
            frames.append(frame)
        elif value == "[":
            outer = frames[-1] if frames else None
            expected = _expected(outer, braces, key)
            frames.append(Frame("[", expected=expected.item if isinstance(expected, ListOf) else expected))
        elif value in (")", "]"):
            if frames:
                frames.pop()
        elif value == "," and frames:
            frames[-1].keyword = None
            frames[-1].positional += 1
        elif value == "=":
            if frames and prev is not None and toks[i - 1][0] == "NAME":
                frames[-1].keyword = prev
                frames[-1].given.add(prev)
            elif not frames and braces and braces[-1] == "train" and prev is not None:
                key = prev
                keys_given.add(prev)
        elif kind == "NAME" and not frames and braces and braces[-1] == "train" and i + 1 < len(toks) \
                and toks[i + 1][1] == "=":
            key = None  # the next entry starts
    prev_tok = (toks[-1][0], toks[-1][1]) if toks else None
    prev2 = (toks[-2][0], toks[-2][1]) if len(toks) > 1 else None
    let = len(toks) > 2 and toks[-3][1] == "let" and toks[-1][1] == "="
    return Context(braces, frames, prev_tok, prev2, key, keys_given, prefix, let)


def _param_type(frame: Frame | None) -> Type | None:
    if frame is None or frame.signature is None:
        return None
    if frame.keyword is not None:
        p = frame.signature.by_name.get(frame.keyword)
        return p.type if p is not None else None
    if frame.positional < min(frame.signature.positional, len(frame.signature.params)):
        return frame.signature.params[frame.positional].type
    return None


def _expected(frame: Frame | None, braces: list[str], key: str | None) -> Type | None:
    """The type of the value being written: a parameter's, a train key's, or a list's items'."""
    if frame is not None:
        if frame.bracket == "[":
            return frame.expected
        return _param_type(frame)
    if braces and braces[-1] == "train" and key in TRAIN_KEYS:
        return TRAIN_KEYS[key].type
    return None


def _resolve_callee(analysis: Analysis, frame: Frame, frames: list[Frame], braces: list[str],
                    key: str | None) -> None:
    name = frame.callee
    if name is None or frame.header:
        return
    outer = frames[-1] if frames else None
    expected = _expected(outer, braces, key)
    sig = signature_for(name, expected) if (expected is not None or braces[-1:] == ["train"]) else None
    if sig is None and not frames and braces and braces[-1] != "train":
        if name in OPS:
            sig = OPS[name].sig
        elif name in analysis.blocks:
            frame.block = name
    if sig is None and frame.block is None and not (braces and braces[-1] != "train" and not frames):
        sig = signature_for(name, None)  # a call in a `let` or an argument: any catalogue's
    frame.signature = sig
    frame.expected = expected


# ----------------------------------------------------------------------------------------------
# items

def _item(label: str, kind: T.CompletionItemKind, detail: str | None = None, doc: str | None = None,
          insert: str | None = None, sort: str = "5") -> T.CompletionItem:
    return T.CompletionItem(label=label, kind=kind, detail=detail,
                            documentation=T.MarkupContent(T.MarkupKind.Markdown, doc) if doc else None,
                            insert_text=insert, sort_text=f"{sort}{label}")


def _ops() -> list[T.CompletionItem]:
    return [_item(op.name, T.CompletionItemKind.Function, op.sig.usage(),
                  f"{op.doc}\n\ne.g. `{op.example}`" if op.example else op.doc) for op in OPS.values()]


def _blocks(analysis: Analysis) -> list[T.CompletionItem]:
    return [_item(name, T.CompletionItemKind.Module, block_header(sym.node), sort="3")
            for name, sym in analysis.blocks.items()]


def _scope_names(analysis: Analysis, index: TextIndex, offset: int, kinds=("constant", "value", "input", "param")):
    line0, col0 = index.line_col(offset)
    out = []
    for sym in analysis.visible(line0 + 1, col0 + 1):
        if sym.kind not in kinds:
            continue
        kind = T.CompletionItemKind.Constant if sym.kind in ("constant", "param") else T.CompletionItemKind.Variable
        what = {"constant": "constant", "param": "block parameter", "value": "value", "input": "input"}[sym.kind]
        out.append(_item(sym.name, kind, what, sort="1"))
    return out


def _stage_constants(analysis: Analysis, index: TextIndex, offset: int) -> list[T.CompletionItem]:
    """The constants that name an op or a block (``let act = relu``): they may stand as a stage."""
    from ..lang import ast as A
    line0, col0 = index.line_col(offset)
    out = []
    for sym in analysis.visible(line0 + 1, col0 + 1):
        value = getattr(sym.node, "value", None) if sym.kind == "constant" else None
        if isinstance(value, (A.Name, A.Call)) and (value.name in OPS or value.name in analysis.blocks):
            out.append(_item(sym.name, T.CompletionItemKind.Constant, f"= {value.name}", sort="1"))
    return out


def _vocabulary(t: Type | None) -> list[T.CompletionItem]:
    """The bare names and calls a value of type ``t`` may be."""
    if t is None:
        return []
    if isinstance(t, ListOf):
        return _vocabulary(t.item)
    if isinstance(t, OneOf):
        return [i for o in t.options for i in _vocabulary(o)]
    if isinstance(t, Bool):
        return [_item(w, T.CompletionItemKind.Keyword, "boolean", sort="2") for w in ("true", "false")]
    if isinstance(t, Catalogue):
        out = []
        for sig in t.signatures.values():
            needs = any(p.default is REQUIRED for p in sig.params)
            out.append(_item(sig.name, T.CompletionItemKind.EnumMember, sig.usage(), sig.doc or None,
                             insert=f"{sig.name}(" if needs else None, sort="2"))
        return out
    if isinstance(t, (Enum, Padding)):
        words = t.choices if isinstance(t, Enum) else ("valid", "same")
        return [_item(w, T.CompletionItemKind.EnumMember, t.doc, sort="2") for w in words]
    return []


def _keywords_of(sig: Signature | None, frame: Frame, analysis: Analysis) -> list[T.CompletionItem]:
    out = []
    if frame.block is not None:
        block = analysis.blocks[frame.block].node
        for p in block.params[frame.positional:] if frame.positional < len(block.params) else []:
            if p.name not in frame.given:
                out.append(_item(f"{p.name}=", T.CompletionItemKind.Field, f"parameter of block {block.name}",
                                 sort="0"))
        if "name" not in frame.given:
            out.append(_item("name=", T.CompletionItemKind.Field, "the use's name (prefix of its layers)", sort="4"))
        return out
    if sig is None:
        return out
    for i, p in enumerate(sig.params):
        if p.name in frame.given or (i < frame.positional and i < sig.positional):
            continue
        default = "required" if p.default is REQUIRED else f"default {p.type.render(p.default)}" \
            if p.default is not None else None
        out.append(_item(f"{p.name}=", T.CompletionItemKind.Field, default, f"{p.type.doc}" + (
            f"\n\n{p.doc}" if p.doc else ""), sort="0"))
    if sig.name in OPS and "name" not in frame.given:
        out.append(_item("name=", T.CompletionItemKind.Field, "the layer's name", sort="4"))
    return out


def complete(analysis: Analysis, index: TextIndex, offset: int) -> list[T.CompletionItem]:
    text = index.text
    if len(text) > MAX_COMPLETION_TEXT:
        return []
    ctx = context_at(analysis, text, offset)
    if ctx is None:
        return []
    prev = ctx.prev[1] if ctx.prev else None
    frame = ctx.frames[-1] if ctx.frames else None
    if frame is not None:
        if frame.header:
            return []  # naming a block's parameters
        expected = _expected(frame, ctx.braces, ctx.key)
        if frame.bracket == "(" and prev in ("(", ","):
            items = _keywords_of(frame.signature, frame, analysis)
            if frame.callee in OPS and OPS[frame.callee].merge or frame.block is not None:
                items += _scope_names(analysis, index, offset)
            else:
                items += _scope_names(analysis, index, offset, ("constant", "param"))
            return items + _vocabulary(expected)
        if prev == "=" or (frame.bracket == "[" and prev in ("[", ",")):
            return _vocabulary(expected) + _scope_names(analysis, index, offset, ("constant", "param"))
        if ctx.braces[-1:] == ["model"] and frame.callee == "shape":
            return _scope_names(analysis, index, offset, ("value", "input"))
        return _scope_names(analysis, index, offset, ("constant", "param"))
    inner = ctx.braces[-1] if ctx.braces else None
    if inner == "train":
        if prev == "=" and ctx.key is not None:
            return _vocabulary(TRAIN_KEYS[ctx.key].type if ctx.key in TRAIN_KEYS else None) + \
                _scope_names(analysis, index, offset, ("constant",))
        return [_item(p.name, T.CompletionItemKind.Property, p.type.doc, p.doc or None, insert=f"{p.name} = ",
                      sort="0") for p in TRAIN_KEYS.values() if p.name not in ctx.keys_given]
    if ctx.let:
        return _scope_names(analysis, index, offset, ("constant", "param")) + _ops()
    if inner is None:
        return [_item(k, T.CompletionItemKind.Keyword, sort="0") for k in TOP_KEYWORDS]
    # model, block or repeat body
    if prev == "->":
        return _blocks(analysis) + _ops() + _stage_constants(analysis, index, offset)
    if prev == "assert":
        return [_item(q, T.CompletionItemKind.Keyword, "a quantity", sort="0") for q in QUANTITIES]
    if prev == ":" and ctx.prev2 is not None and ctx.prev2[0] == "NAME":
        return [_item(d, T.CompletionItemKind.TypeParameter, "input dtype", sort="0") for d in ("float32", "int64")]
    if prev == "=" and ctx.prev2 is not None and ctx.prev2[0] == "NAME":
        return _scope_names(analysis, index, offset) + _blocks(analysis) + _ops()
    keywords = STATEMENT_KEYWORDS + (MODEL_KEYWORDS if inner == "model" else ())
    return (_scope_names(analysis, index, offset) + _blocks(analysis) + _ops()
            + [_item(k, T.CompletionItemKind.Keyword, sort="6") for k in keywords])
