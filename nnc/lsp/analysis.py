"""What the language server knows about one version of a document: the diagnostics of ``nnc
check``, the syntax tree, the lowered model (shapes, parameters, FLOPs of every stage) and an index
of names: every definition (constants, values, inputs, blocks and their parameters, train keys)
and every place a hover or a go-to-definition can talk about.

Nothing here imports pygls: :func:`analyze` is plain Python over the compiler's public pieces --
:func:`~nnc.compiler.parse.parse` (the diagnostics), :func:`~nnc.compiler.parse.parse_prefix` (the
tree before a syntax error), :class:`~nnc.compiler.lower.Lowerer` (the model, kept even when the
file has errors: ``Lowerer.top``, ``ModelPass.nodes``, ``.block_uses`` and ``.produced``).

The diagnostics are exactly those of ``nnc check``: the same parse and the same lowering, sorted
and de-duplicated by the same sink (``tests/test_lsp_analysis.py`` compares them over the whole
error corpus).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..compiler.builtin_names import is_builtin_value
from ..compiler.lower import Lowerer
from ..compiler.ops import OPS
from ..compiler.parse import gc_paused, parse, parse_prefix
from ..compiler.trainspec import TRAIN_KEYS
from ..errors import Diagnostic, NncError, SourceSpan
from ..lang import ast as A
from ..lang.types import Catalogue, ListOf, OneOf, Signature, Type
from ..vocab import INITIALIZERS, LOSSES, OPTIMIZERS, SCHEDULES, SOURCES
from .positions import contains, size

#: codes after which nothing of the text can be parsed (the whole file is refused)
UNPARSABLE = ("E001", "E106", "E107")
#: every catalogue of called values, for a call whose parameter type is not known
CATALOGUES = (OPTIMIZERS, LOSSES, SCHEDULES, SOURCES, INITIALIZERS)


@dataclass
class Symbol:
    """A definition: a constant, value, input, block, block parameter, model, train block or key."""

    name: str
    kind: str                       # constant | value | input | block | param | model | train | key
    span: SourceSpan                # the name
    full: SourceSpan                # the whole definition
    node: Any                       # the syntax-tree node that defines it
    scope: str = "top"              # top | model | block | repeat: where it is visible
    region: SourceSpan | None = None  # the construct it is visible in (None: the whole file)
    owner: "Symbol | None" = None   # the enclosing model, block or train symbol
    children: list["Symbol"] = field(default_factory=list)


@dataclass
class Site:
    """A place in the text that hover and go-to-definition can talk about."""

    span: SourceSpan
    kind: str                       # op | block_use | ref | def | param | key | catalogue | builtin
    name: str
    target: Symbol | None = None    # the definition (ref, block_use, def; param of a block)
    stage: A.Call | None = None     # the pipeline stage (op, block_use)
    signature: Signature | None = None   # op, catalogue; the owner's signature for a param
    param: Any = None               # a lang.types.Param (op, catalogue or train-key parameter)


@dataclass
class Analysis:
    """One version of a document, analysed."""

    text: str
    path: str | None
    diagnostics: list[Diagnostic]
    file: A.File | None             # the whole tree, or the part before a syntax error
    complete: bool                  # whether the whole text parsed
    lowerer: Lowerer | None
    symbols: list[Symbol] = field(default_factory=list)   # every definition, in source order
    sites: list[Site] = field(default_factory=list)
    blocks: dict[str, Symbol] = field(default_factory=dict)
    internal_error: str | None = None   # a bug in nnc met while lowering (logged, never shown as a diagnostic)

    # -- what the lowering produced, by span -------------------------------------------------------
    def __post_init__(self):
        self.produced: dict[SourceSpan, list] = {}
        self.nodes_at: dict[SourceSpan, list] = {}
        self.uses_at: dict[SourceSpan, list] = {}
        self.nodes: list = []
        self.uses: list = []
        model = self.lowerer.model if self.lowerer is not None else None
        if model is None:
            return
        self.nodes = model.nodes
        self.uses = model.block_uses
        for span, value in model.produced:
            self.produced.setdefault(span, []).append(value)
        for node in model.nodes:
            self.nodes_at.setdefault(node.span, []).append(node)
        for use in model.block_uses:
            self.uses_at.setdefault(use.span, []).append(use)

    def site_at(self, line: int, column: int) -> Site | None:
        """The innermost site at a 1-based (line, column)."""
        best = None
        for s in self.sites:
            if contains(s.span, line, column) and (best is None or size(s.span) < size(best.span)):
                best = s
        return best

    def nodes_of_use(self, use_id: str) -> list:
        prefix = use_id + "."
        return [n for n in self.nodes if n.id.startswith(prefix)]

    def visible(self, line: int, column: int) -> list[Symbol]:
        """The constants, values, inputs and parameters a statement at (line, column) can name:
        those defined before it in the constructs around it (the innermost definition of a name)."""
        out: dict[str, Symbol] = {}
        for s in self.symbols:
            if s.kind not in ("constant", "value", "input", "param"):
                continue
            if s.region is not None and not contains(s.region, line, column):
                continue
            if (s.span.line, s.span.column) >= (line, column):
                continue
            out[s.name] = s
        return list(out.values())


def analyze(text: str, path: str | None = None) -> Analysis:
    """Parse, check and lower ``text`` as ``nnc check`` does; index its names. Never raises for any
    input (a bug met while lowering is kept in ``internal_error``)."""
    diagnostics: list[Diagnostic] = []
    file: A.File | None = None
    complete = False
    if text.startswith("\ufeff"):
        # NOTE: `nnc check` drops a byte-order mark; a blank in its place keeps every column
        text = " " + text[1:]
    source: str | bytes = text.encode("utf-8", "surrogatepass") if "\x00" in text[:8192] else text
    try:
        file = parse(source, path)
        complete = True
    except NncError as err:
        diagnostics = err.diagnostics
        if not any(d.code in UNPARSABLE for d in diagnostics):
            file = parse_prefix(text)
    lowerer = None
    internal = None
    if file is not None:
        lowerer = Lowerer(path)
        with gc_paused():
            try:
                lowerer.lower(file, text)
            except NncError as err:
                if complete:
                    diagnostics = err.diagnostics
            except Exception as exc:  # noqa: BLE001 - a bug in nnc; an editor must keep working
                internal = f"{type(exc).__name__}: {exc}"
            else:
                if complete:
                    diagnostics = lowerer.warnings
    analysis = Analysis(text, path, diagnostics, file, complete, lowerer, internal_error=internal)
    if file is not None:
        Resolver(analysis).file(file)
    return analysis


# ----------------------------------------------------------------------------------------------
# names: definitions and the places that refer to them

def catalogue_of(t: Type | None) -> Catalogue | None:
    if isinstance(t, Catalogue):
        return t
    if isinstance(t, OneOf):
        return next((o for o in t.options if isinstance(o, Catalogue)), None)
    if isinstance(t, ListOf):
        return catalogue_of(t.item)
    return None


def signature_for(name: str, t: Type | None) -> Signature | None:
    """The signature of the called value ``name`` where a value of type ``t`` goes (``adam`` in
    ``optimizer = adam(...)``, ``normal`` in ``init=normal(0, 1)``); any catalogue's if unknown."""
    cat = catalogue_of(t)
    if cat is not None:
        return cat.signatures.get(name)
    if t is None:
        for c in CATALOGUES:
            if name in c.signatures:
                return c.signatures[name]
    return None


class _Scope:
    def __init__(self, parent: "_Scope | None", kind: str, region: SourceSpan | None, owner: Symbol | None):
        self.parent, self.kind, self.region, self.owner = parent, kind, region, owner
        self.names: dict[str, Symbol] = {}

    def lookup(self, name: str) -> Symbol | None:
        s: _Scope | None = self
        while s is not None:
            if name in s.names:
                return s.names[name]
            s = s.parent
        return None


class Resolver:
    """Walks the syntax tree with the language's scopes (3.1, 3.3): top-level constants and blocks;
    the model's inputs, constants and values; each ``repeat`` body and each block body a scope of
    its own (a body sees the top-level constants and its parameters, nothing of the caller's)."""

    def __init__(self, analysis: Analysis):
        self.a = analysis

    def define(self, scope: _Scope, name: str, kind: str, span: SourceSpan, full: SourceSpan, node) -> Symbol:
        sym = Symbol(name, kind, span, full, node, scope.kind, scope.region, scope.owner)
        self.a.symbols.append(sym)
        if scope.owner is not None:
            scope.owner.children.append(sym)
        if name not in scope.names:  # a name bound twice (an error) keeps its first definition
            scope.names[name] = sym
        self.a.sites.append(Site(span, "def", name, sym))
        return sym

    def file(self, f: A.File) -> None:
        top = _Scope(None, "top", None, None)
        self.top = top
        for item in f.items:  # blocks are visible everywhere, before or after their definition
            if isinstance(item, A.BlockDef) and item.name not in self.a.blocks:
                sym = Symbol(item.name, "block", item.name_span, item.span, item)
                self.a.blocks[item.name] = sym
        for item in f.items:
            if isinstance(item, A.LetStmt):
                self.value(item.value, top)
                self.define(top, item.name, "constant", item.name_span, item.span, item)
            elif isinstance(item, A.BlockDef):
                self.block_def(item, top)
            elif isinstance(item, A.Model):
                sym = Symbol(item.name, "model", item.name_span, item.span, item)
                self.a.symbols.append(sym)
                self.a.sites.append(Site(item.name_span, "def", item.name, sym))
                self.statements(item.body, _Scope(top, "model", item.span, sym))
            elif isinstance(item, A.Train):
                sym = Symbol("train", "train", SourceSpan(item.span.line, item.span.column, item.span.line,
                                                          item.span.column + 5), item.span, item)
                self.a.symbols.append(sym)
                for e in item.entries:
                    param = TRAIN_KEYS.get(e.key)
                    key = Symbol(e.key, "key", e.key_span, e.span, e, "train", item.span, sym)
                    sym.children.append(key)
                    self.a.symbols.append(key)
                    self.a.sites.append(Site(e.key_span, "key", e.key, key, param=param))
                    self.value(e.value, top, param.type if param is not None else None)

    def block_def(self, b: A.BlockDef, top: _Scope) -> None:
        sym = self.a.blocks.get(b.name)
        if sym is None or sym.node is not b:  # a second definition of the name (an error)
            sym = Symbol(b.name, "block", b.name_span, b.span, b)
        self.a.symbols.append(sym)
        self.a.sites.append(Site(b.name_span, "def", b.name, sym))
        scope = _Scope(top, "block", b.span, sym)
        for p in b.params:
            if p.default is not None:
                self.value(p.default, scope)
            self.define(scope, p.name, "param", p.name_span, p.span, p)
        self.statements(b.body, scope)

    # -- statements --------------------------------------------------------------------------------
    def statements(self, body: list, scope: _Scope) -> None:
        for st in body:
            if isinstance(st, A.LetStmt):
                self.value(st.value, scope)
                self.define(scope, st.name, "constant", st.name_span, st.span, st)
            elif isinstance(st, A.InputDecl):
                for d in st.dims:
                    self.value(d, scope)
                self.define(scope, st.name, "input", st.name_span, st.span, st)
            elif isinstance(st, A.OutputDecl):
                for n in st.names:
                    self.name(n, scope)
            elif isinstance(st, A.AssertStmt):
                if st.quantity.arg is not None:
                    self.name(st.quantity.arg, scope)
                self.value(st.value, scope)
            elif isinstance(st, A.Repeat):
                self.value(st.count, scope)
                inner = _Scope(scope, "repeat", st.span, scope.owner)
                self.statements(st.body, inner)
            elif isinstance(st, A.Binding):
                self.pipeline(st.pipeline, scope)
                self.define(scope, st.name, "value", st.name_span, st.span, st)
            elif isinstance(st, A.Pipeline):
                self.pipeline(st, scope)

    def pipeline(self, pipe: A.Pipeline, scope: _Scope) -> None:
        for i, st in enumerate(pipe.stages):
            target = scope.lookup(st.name)
            if i == 0 and st.args is None and target is not None and target.kind != "constant":
                self.a.sites.append(Site(st.name_span, "ref", st.name, target, stage=st))
                continue
            if st.name in self.a.blocks:
                block = self.a.blocks[st.name]
                self.a.sites.append(Site(st.name_span, "block_use", st.name, block, stage=st))
                params = {p.name: p for p in block.node.params}
                for arg in st.args or []:
                    if isinstance(arg, A.KwArg):
                        if arg.name in params:
                            psym = next((c for c in block.children if c.kind == "param" and c.name == arg.name), None)
                            self.a.sites.append(Site(arg.name_span, "param", arg.name, psym))
                        self.value(arg.value, scope)
                    else:
                        self.value(arg, scope)
                continue
            if st.name in OPS:
                op = OPS[st.name]
                self.a.sites.append(Site(st.name_span, "op", st.name, stage=st, signature=op.sig))
                self.args(st, op.sig, scope)
                continue
            if target is not None:  # `let act = relu` used as a stage
                self.a.sites.append(Site(st.name_span, "ref", st.name, target, stage=st))
            for arg in st.args or []:
                self.value(arg.value if isinstance(arg, A.KwArg) else arg, scope)

    def args(self, call: A.Call, sig: Signature, scope: _Scope) -> None:
        positional = 0
        for arg in call.args or []:
            if isinstance(arg, A.KwArg):
                param = sig.by_name.get(arg.name)
                if param is not None:
                    self.a.sites.append(Site(arg.name_span, "param", arg.name, signature=sig, param=param))
                self.value(arg.value, scope, param.type if param is not None else None)
            else:
                param = sig.params[positional] if positional < min(sig.positional, len(sig.params)) else None
                positional += 1
                self.value(arg, scope, param.type if param is not None else None)

    # -- values ------------------------------------------------------------------------------------
    def name(self, n: A.Name, scope: _Scope, expected: Type | None = None) -> None:
        target = scope.lookup(n.name)
        if target is not None:
            self.a.sites.append(Site(n.span, "ref", n.name, target))
        elif n.name in self.a.blocks:
            self.a.sites.append(Site(n.span, "ref", n.name, self.a.blocks[n.name]))
        elif n.name in OPS:
            self.a.sites.append(Site(n.span, "op", n.name, signature=OPS[n.name].sig))
        else:
            sig = signature_for(n.name, expected)
            if sig is not None:
                self.a.sites.append(Site(n.span, "catalogue", n.name, signature=sig))
            elif is_builtin_value(n.name):
                self.a.sites.append(Site(n.span, "builtin", n.name))

    def value(self, v, scope: _Scope, expected: Type | None = None) -> None:
        if isinstance(v, A.Name):
            self.name(v, scope, expected)
        elif isinstance(v, A.List):
            item = expected.item if isinstance(expected, ListOf) else None
            for x in v.items:
                self.value(x, scope, item)
        elif isinstance(v, A.Call):
            sig = signature_for(v.name, expected)
            if sig is not None:
                self.a.sites.append(Site(v.name_span, "catalogue", v.name, signature=sig))
                self.args(v, sig, scope)
            else:
                for a in v.args or []:
                    self.value(a.value if isinstance(a, A.KwArg) else a, scope)
        elif isinstance(v, A.BinOp):
            self.value(v.left, scope)
            self.value(v.right, scope)
        elif isinstance(v, A.Neg):
            self.value(v.operand, scope)
        elif isinstance(v, A.Paren):
            self.value(v.inner, scope)
