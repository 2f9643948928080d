"""The language features over one :class:`~.analysis.Analysis`, in the protocol's types
(lsprotocol): diagnostics, hover, inlay hints, document symbols, go-to-definition, quick fixes and
formatting. Completion is in :mod:`.completion`.

Every function takes the analysis and a :class:`~.positions.TextIndex` of the same text (which
knows the negotiated position encoding) and returns protocol objects; none of them raises for
any text.
"""
from __future__ import annotations

import re

from lsprotocol import types as T

from ..compiler.builtin_names import describe
from ..compiler.ops import OPS
from ..errors import SourceSpan, fmt_shape
from ..lang import ast as A
from ..lang.types import REQUIRED, show
from ..lang.types import Catalogue
from .analysis import Analysis, Site, Symbol, catalogue_of
from .positions import TextIndex

MAX_ROWS = 12  # layers listed in a hover before "... and N more"


def lsp_range(index: TextIndex, span: SourceSpan | None) -> T.Range:
    (l0, c0), (l1, c1) = index.span_range(span)
    return T.Range(T.Position(l0, c0), T.Position(l1, c1))


def whole(index: TextIndex) -> T.Range:
    line, col = index.end()
    return T.Range(T.Position(0, 0), T.Position(line, col))


# ----------------------------------------------------------------------------------------------
# diagnostics

def diagnostics(analysis: Analysis, index: TextIndex, uri: str, errors_url: str) -> list[T.Diagnostic]:
    """``nnc check``'s diagnostics: code (linked to its section of docs/errors.md), message, hint
    (after the message, and in ``data``), the block uses that expanded a body as related places."""
    out = []
    for d in analysis.diagnostics:
        span = d.span or SourceSpan(1, 1, 1, 2)
        related = [T.DiagnosticRelatedInformation(T.Location(uri, lsp_range(index, n.span)), n.message)
                   for n in d.notes if n.span is not None]
        out.append(T.Diagnostic(
            range=lsp_range(index, span),
            message=d.message + (f"\nhint: {d.hint}" if d.hint else ""),
            severity=T.DiagnosticSeverity.Error if d.severity == "error" else T.DiagnosticSeverity.Warning,
            code=d.code,
            code_description=T.CodeDescription(href=f"{errors_url}#{d.code.lower()}"),
            source="nnc",
            related_information=related or None,
            data={"hint": d.hint, "notes": [n.message for n in d.notes]}))
    return out


# ----------------------------------------------------------------------------------------------
# hover

def _n(x: int) -> str:
    return f"{x:,}"


def _shapes(values) -> list[str]:
    return list(dict.fromkeys(fmt_shape(v.shape) for v in values if v.shape is not None))


def _code(text: str) -> str:
    return f"```nnspec\n{text}\n```"


def block_header(b: A.BlockDef) -> str:
    params = [p.name if p.default is None else f"{p.name} = {show(p.default)}" for p in b.params]
    return f"block {b.name}({', '.join(params)})"


def _use_args(use) -> str:
    return ", ".join(f"{k} = {v['value'] if isinstance(v, dict) else v}" for k, v in use.args.items())


def _node_line(n) -> str:
    weights = ", ".join(f"`{w.name} {fmt_shape(w.shape)}`" for w in n.weights)
    return (f"**{n.id}** → `{fmt_shape(n.shape)}` · {_n(n.params)} parameters · {_n(n.flops)} FLOPs"
            + (f"  \nweights: {weights}" if weights else ""))


def _node_table(nodes) -> str:
    rows = ["| layer | output | parameters | FLOPs |", "|---|---|--:|--:|"]
    for n in nodes[:MAX_ROWS]:
        rows.append(f"| `{n.id}` | `{fmt_shape(n.shape)}` | {_n(n.params)} | {_n(n.flops)} |")
    if len(nodes) > MAX_ROWS:
        rows.append(f"| ... and {len(nodes) - MAX_ROWS} more | | | |")
    return "\n".join(rows)


def _stage_result(analysis: Analysis, stage: A.Call) -> str:
    nodes = analysis.nodes_at.get(stage.span, [])
    if len(nodes) == 1:
        return _node_line(nodes[0])
    if nodes:
        total_p, total_f = sum(n.params for n in nodes), sum(n.flops for n in nodes)
        return (f"{len(nodes)} layers from this stage (`repeat` or block uses): {_n(total_p)} parameters, "
                f"{_n(total_f)} FLOPs\n\n" + _node_table(nodes))
    if analysis.produced.get(stage.span):
        return "_no shape: this stage, or one before it, has an error_"
    return ""


def _op_hover(analysis: Analysis, site: Site) -> str:
    op = OPS[site.name]
    parts = [_code(op.sig.usage()), op.doc]
    if site.stage is not None:
        result = _stage_result(analysis, site.stage)
        if result:
            parts.append(result)
    return "\n\n".join(p for p in parts if p)


def _use_hover(analysis: Analysis, site: Site) -> str:
    block = site.target.node
    parts = [_code(block_header(block))]
    uses = analysis.uses_at.get(site.stage.span, []) if site.stage is not None else []
    results = analysis.produced.get(site.stage.span, []) if site.stage is not None else []
    for k, use in enumerate(uses[:MAX_ROWS]):
        nodes = analysis.nodes_of_use(use.id)
        shape = results[k].shape if k < len(results) and results[k].shape is not None else None
        line = f"**{use.id}**" + (f" → `{fmt_shape(shape)}`" if shape is not None else "")
        line += f" · {len(nodes)} layers · {_n(sum(n.params for n in nodes))} parameters · " \
                f"{_n(sum(n.flops for n in nodes))} FLOPs"
        if use.args:
            line += f"  \n{_use_args(use)}"
        parts.append(line)
    if len(uses) > MAX_ROWS:
        parts.append(f"... and {len(uses) - MAX_ROWS} more uses")
    if not uses and results:
        parts.append("_no shape: this use, or a stage before it, has an error_")
    return "\n\n".join(parts)


def _block_def_hover(analysis: Analysis, sym: Symbol) -> str:
    parts = [_code(block_header(sym.node))]
    uses = [u for u in analysis.uses if u.block == sym.name]
    if uses:
        shown = ", ".join(f"`{u.id}`" + (f" ({_use_args(u)})" if u.args else "") for u in uses[:MAX_ROWS])
        parts.append(f"used {len(uses)} time{'s' * (len(uses) != 1)}: {shown}"
                     + (" ..." if len(uses) > MAX_ROWS else ""))
    else:
        parts.append("_not used in the model_")
    return "\n\n".join(parts)


def const_value(analysis: Analysis, sym: Symbol) -> A.Value | None:
    """The evaluated value of a constant defined at the top level or in the model's body."""
    low = analysis.lowerer
    if low is None:
        return None
    scope = low.top if sym.scope == "top" else low.model.model_scope if sym.scope == "model" else None
    return scope.consts.get(sym.name) if scope is not None else None


def _const_hover(analysis: Analysis, sym: Symbol) -> str:
    let = sym.node
    parts = [_code(f"let {let.name} = {show(let.value)}")]
    value = const_value(analysis, sym)
    if value is not None and show(value) != show(let.value):
        parts.append(f"= `{show(value)}`")
    elif value is None and sym.scope not in ("top", "model"):
        parts.append(f"a constant of this {sym.scope}")
    return "\n\n".join(parts)


def _param_hover(analysis: Analysis, sym: Symbol) -> str:
    p = sym.node
    block = sym.owner.node if sym.owner is not None else None
    head = f"parameter `{p.name}` of `{block_header(block)}`" if block is not None else f"parameter `{p.name}`"
    parts = [head]
    if p.default is not None:
        parts.append(f"default `{show(p.default)}`")
    uses = [u for u in analysis.uses if block is not None and u.block == block.name and p.name in u.args]
    if uses:
        rows = [f"`{u.id}`: `{u.args[p.name]['value'] if isinstance(u.args[p.name], dict) else u.args[p.name]}`"
                for u in uses[:MAX_ROWS]]
        parts.append("in each use: " + ", ".join(rows) + (" ..." if len(uses) > MAX_ROWS else ""))
    return "\n\n".join(parts)


def _value_hover(analysis: Analysis, sym: Symbol) -> str:
    if sym.kind == "input":
        decl = sym.node
        dtype = decl.dtype.name if decl.dtype is not None else "float32"
        inputs = analysis.lowerer.model.inputs if analysis.lowerer is not None else []
        found = next((i for i in inputs if i.name == decl.name), None)
        shape = fmt_shape(found.shape) if found is not None else "[" + ", ".join(show(d) for d in decl.dims) + "]"
        return _code(f"input {decl.name}: {dtype} {shape}") + "\n\nan input of the model"
    values = analysis.produced.get(sym.span, [])
    shapes = _shapes(values)
    where = {"model": "the model", "block": "a block body (local to each use)",
             "repeat": "a `repeat` body (local to each repetition)"}.get(sym.scope, "the model")
    head = f"value `{sym.name}`" + (f": `{' | '.join(shapes)}`" if shapes else "")
    ids = list(dict.fromkeys(v.id for v in values if v.shape is not None))
    parts = [head, f"bound in {where}"]
    if ids:
        parts.append("from " + ", ".join(f"`{i}`" for i in ids[:MAX_ROWS]) + (" ..." if len(ids) > MAX_ROWS else ""))
    elif values:
        parts.append("_no shape: its pipeline has an error_")
    return "\n\n".join(parts)


def _model_hover(analysis: Analysis, sym: Symbol) -> str:
    nodes = analysis.nodes
    parts = [f"model `{sym.name}`"]
    if nodes:
        so_far = "" if analysis.complete and not any(d.severity == "error" for d in analysis.diagnostics) \
            else " (so far: the file has errors)"
        parts.append(f"{len(nodes)} layers · {_n(sum(n.params for n in nodes))} parameters · "
                     f"{_n(sum(n.flops for n in nodes))} FLOPs per example{so_far}")
    return "\n\n".join(parts)


def _param_doc(owner: str, p) -> str:
    parts = [f"`{owner}` parameter `{p.name}`: {p.type.doc}"]
    if p.default is not REQUIRED and p.default is not None:
        parts.append(f"default `{p.type.render(p.default)}`")
    elif p.default is REQUIRED:
        parts.append("required")
    if p.doc:
        parts.append(p.doc)
    return "\n\n".join(parts)


def hover_text(analysis: Analysis, site: Site) -> str | None:
    """The Markdown a hover over ``site`` shows."""
    kind = site.kind
    if kind == "op":
        return _op_hover(analysis, site)
    if kind == "block_use" and site.target is not None:
        return _use_hover(analysis, site)
    if kind in ("ref", "def") and site.target is not None:
        sym = site.target
        if sym.kind == "constant":
            text = _const_hover(analysis, sym)
            if site.stage is not None:  # `let act = relu` used as a stage
                text += "\n\n" + _stage_result(analysis, site.stage)
            return text
        if sym.kind in ("value", "input"):
            return _value_hover(analysis, sym)
        if sym.kind == "param":
            return _param_hover(analysis, sym)
        if sym.kind == "block":
            return _block_def_hover(analysis, sym)
        if sym.kind == "model":
            return _model_hover(analysis, sym)
        return None
    if kind == "param":
        if site.target is not None:
            return _param_hover(analysis, site.target)
        if site.param is not None and site.signature is not None:
            return _param_doc(site.signature.name, site.param)
        return None
    if kind == "key":
        p = site.param
        if p is None:
            return None
        cat = catalogue_of(p.type)
        if isinstance(p.type, Catalogue):
            article = "an" if cat.what[:1] in "aeiou" else "a"
            parts = [f"train key `{p.name}`: {article} {cat.what}, one of", _code("\n".join(
                sig.usage() for sig in cat.signatures.values()))]
        elif cat is not None:
            parts = [f"train key `{p.name}`: {p.type.doc}", f"{cat.what}s:", _code("\n".join(
                sig.usage() for sig in cat.signatures.values()))]
        else:
            parts = [f"train key `{p.name}`: {p.type.doc}"]
        if p.default is REQUIRED:
            parts.append("required")
        elif p.default is not None:
            parts.append(f"default `{p.type.render(p.default)}`")
        if p.doc:
            parts.append(p.doc)
        return "\n\n".join(parts)
    if kind == "catalogue" and site.signature is not None:
        sig = site.signature
        return "\n\n".join(x for x in (_code(sig.usage()), sig.doc) if x)
    if kind == "builtin":
        return f"`{site.name}`: {describe(site.name)}"
    return None


def hover(analysis: Analysis, index: TextIndex, offset: int) -> T.Hover | None:
    line0, col0 = index.line_col(offset)
    site = analysis.site_at(line0 + 1, col0 + 1)
    if site is None:
        return None
    text = hover_text(analysis, site)
    if not text:
        return None
    return T.Hover(T.MarkupContent(T.MarkupKind.Markdown, text), lsp_range(index, site.span))


# ----------------------------------------------------------------------------------------------
# inlay hints

def inlay_hints(analysis: Analysis, index: TextIndex, rng: T.Range | None = None) -> list[T.InlayHint]:
    """The output shape after each stage (``[16, 8, 8]``); a stage expanded several times with
    different shapes (in a block used twice) shows each, ``[8] | [16]``."""
    first, last = (rng.start.line + 1, rng.end.line + 1) if rng is not None else (1, 1 << 30)
    out = []
    seen: set[SourceSpan] = set()
    for site in analysis.sites:
        stage = site.stage
        if stage is None or stage.span in seen or not (first <= stage.span.end_line <= last):
            continue
        seen.add(stage.span)
        values = analysis.produced.get(stage.span)
        shapes = _shapes(values or [])
        if not shapes:
            continue
        label = " | ".join(shapes[:3]) + (" | ..." if len(shapes) > 3 else "")
        line, col = index.to_client(stage.span.end_line - 1, stage.span.end_column - 1)
        ids = list(dict.fromkeys(v.id for v in values if v.shape is not None))
        tip = ", ".join(ids[:MAX_ROWS]) + (" ..." if len(ids) > MAX_ROWS else "")
        out.append(T.InlayHint(position=T.Position(line, col), label=label, kind=T.InlayHintKind.Type,
                               tooltip=tip, padding_left=True))
    return out


# ----------------------------------------------------------------------------------------------
# symbols and definitions

_KINDS = {"model": T.SymbolKind.Class, "block": T.SymbolKind.Function, "constant": T.SymbolKind.Constant,
          "value": T.SymbolKind.Variable, "input": T.SymbolKind.Field, "param": T.SymbolKind.TypeParameter,
          "train": T.SymbolKind.Namespace, "key": T.SymbolKind.Property}


def _detail(analysis: Analysis, sym: Symbol) -> str | None:
    if sym.kind == "constant":
        value = const_value(analysis, sym)
        return show(value if value is not None else sym.node.value)
    if sym.kind == "value":
        shapes = _shapes(analysis.produced.get(sym.span, []))
        return " | ".join(shapes[:3]) if shapes else None
    if sym.kind == "input":
        return "[" + ", ".join(show(d) for d in sym.node.dims) + "]"
    if sym.kind == "block":
        return block_header(sym.node).removeprefix("block ")
    if sym.kind == "key":
        return show(sym.node.value)
    if sym.kind == "param" and sym.node.default is not None:
        return f"= {show(sym.node.default)}"
    return None


def document_symbols(analysis: Analysis, index: TextIndex) -> list[T.DocumentSymbol]:
    """The model (its inputs, constants and named values), each block (its parameters and values),
    the top-level constants and the train block (its keys), in source order."""
    def build(sym: Symbol) -> T.DocumentSymbol:
        full, name = lsp_range(index, sym.full), lsp_range(index, sym.span)
        if (full.start.line, full.start.character) > (name.start.line, name.start.character) or \
                (full.end.line, full.end.character) < (name.end.line, name.end.character):
            full = name  # a range must contain its selection range
        return T.DocumentSymbol(name=sym.name, kind=_KINDS[sym.kind], range=full, selection_range=name,
                                detail=_detail(analysis, sym),
                                children=[build(c) for c in sym.children] or None)
    return [build(s) for s in analysis.symbols if s.owner is None]


def definition(analysis: Analysis, index: TextIndex, uri: str, offset: int) -> T.Location | None:
    """Where the value, constant, input, block or block parameter under the cursor is defined."""
    line0, col0 = index.line_col(offset)
    site = analysis.site_at(line0 + 1, col0 + 1)
    if site is None or site.target is None:
        return None
    return T.Location(uri, lsp_range(index, site.target.span))


# ----------------------------------------------------------------------------------------------
# quick fixes

_DID_YOU_MEAN = re.compile(r"did you mean `([^`]+)`\?")
_ADD_BEFORE = re.compile(r"add `([^`]+)` before it")
_EXAMPLE_FIRST = re.compile(r"first, e\.g\. `([a-z_0-9]+\([^`]*\))`")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def mechanical_fix(d, index: TextIndex) -> tuple[str, list[tuple[SourceSpan, str]]] | None:
    """The fix a diagnostic's hint spells out, where applying it needs no choice:
    ``(title, [(span to replace, new text)])``, or None."""
    if d.span is None:
        return None
    hint = d.hint or ""
    text = index.span_text(d.span)
    start = SourceSpan(d.span.line, d.span.column, d.span.line, d.span.column)
    m = _DID_YOU_MEAN.search(hint)
    if m and "\n" not in text:
        new = m.group(1)
        quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'"
        word = text[1:-1] if quoted else text
        if _NAME.fullmatch(word) and word != new:
            return f"Replace `{word}` with `{new}`", [(d.span, f"{text[0]}{new}{text[0]}" if quoted else new)]
    m = _ADD_BEFORE.search(hint) or _EXAMPLE_FIRST.search(hint)
    if m and _NAME.match(text) and "..." not in m.group(1):
        return f"Add `{m.group(1)}` before it", [(start, f"{m.group(1)} -> ")]
    if d.code == "E101":
        if "write the arrow as `->`" in hint:
            return "Write the arrow as `->`", [(d.span, "->")]
        if "plain ASCII quotes" in hint:
            new = "'" if text in "‘’" else '"'
            return f"Use the ASCII quote {new}", [(d.span, new)]
        if "remove the `;`" in hint or "remove the `\\`" in hint:
            return f"Remove the `{text}`", [(d.span, "")]
    if "compare with `==`" in hint and text == "=":
        return "Compare with `==`", [(d.span, "==")]
    return None


def code_actions(analysis: Analysis, index: TextIndex, uri: str, rng: T.Range,
                 errors_url: str) -> list[T.CodeAction]:
    out = []
    lsp = diagnostics(analysis, index, uri, errors_url)
    for d, ld in zip(analysis.diagnostics, lsp):
        if ld.range.end.line < rng.start.line or ld.range.start.line > rng.end.line:
            continue
        fix = mechanical_fix(d, index)
        if fix is None:
            continue
        title, edits = fix
        text_edits = [T.TextEdit(lsp_range(index, span), new) for span, new in edits]
        out.append(T.CodeAction(title=title, kind=T.CodeActionKind.QuickFix, diagnostics=[ld],
                                edit=T.WorkspaceEdit(changes={uri: text_edits}), is_preferred=True))
    return out


# ----------------------------------------------------------------------------------------------
# formatting

def formatting(text: str, index: TextIndex, path: str | None) -> list[T.TextEdit] | None:
    """``nnc fmt``'s canonical form as one edit (none when the text is canonical already); None
    when the text does not parse (its diagnostics say why)."""
    from ..compiler.format import format_source
    from ..errors import NncError
    try:
        new = format_source(text, path)
    except NncError:
        return None
    if new == text:
        return []
    return [T.TextEdit(whole(index), new)]
