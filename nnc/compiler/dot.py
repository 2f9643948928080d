"""``nnc graph``: the network as a Graphviz DOT graph, from the IR (standard library only).

One node per input, layer and output. A layer's node is an HTML-like table (so names, shapes and
arguments need no record-label escaping, only HTML's ``& < > "``):

    conv2d_1 | conv2d          the layer name and the op
    16, 3, padding=same        its arguments: positional ones, then the keywords not at their default
    [16, 8, 8] | 160 params    the output shape per example, and the parameter count (state too)

Every use of a block is a cluster labelled with its name and arguments (``stage2 · stage(c = 16)``),
nested as the uses are (a block used inside a block). A merge (``add``, ``multiply``, ``concat``,
attention over two values) is a join: an edge from each of its inputs. Colours follow the op's kind
(layers blue, activations green, pools yellow, merges orange, ...). The output is deterministic:
the IR's order, so a golden file can hold it.
"""
from __future__ import annotations

from ..errors import fmt_shape
from .ops import OPS

FONT = "Helvetica"
COLORS = {"layer": "#dbe9f6", "activation": "#e3f2d9", "pool": "#fff2c7", "shape": "#eeeeee",
          "reduce": "#eeeeee", "norm": "#efe2f3", "regularization": "#f4f4f4", "merge": "#fddcb5",
          "attention": "#f9dce3"}
INPUT_COLOR, OUTPUT_COLOR = "#ffffff", "#ffffff"


def html(text: str) -> str:
    """Text for an HTML-like label: ``& < > "`` escaped (DOT itself needs nothing more inside ``<>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def quote(ident: str) -> str:
    """A DOT identifier in double quotes (backslashes and quotes escaped)."""
    return '"' + ident.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _get(obj, key):
    return obj[key] if isinstance(obj, dict) else getattr(obj, key)


def arguments(op: str, attrs: dict, rank: int | None = None) -> str:
    """A layer's arguments as a spec writes them: ``16, 3, padding=same``. Keyword parameters at
    their default are left out, the default seen as the shape rule normalised it: a negative axis
    counts from the end of the input's ``rank`` axes (``softmax``'s ``axis=-1``), and a default of
    ``None`` stands for one derived from the first parameter (a pool's ``stride`` is its ``size``)."""
    opdef = OPS.get(op)
    if opdef is None:
        return ""
    sig = opdef.sig
    parts = []
    first = sig.params[0].name if sig.params else None
    for i, p in enumerate(sig.params):
        if p.name not in attrs:
            continue
        value = attrs[p.name]
        if i < sig.positional:
            parts.append(p.type.render(value))
        elif value == p.default or (p.default is None and i > 0 and value == attrs.get(first)) or (
                isinstance(p.default, int) and not isinstance(p.default, bool) and p.default < 0
                and rank and value == p.default % rank):
            continue
        else:
            parts.append(f"{p.name}={p.type.render(value)}")
    return ", ".join(parts)


def _table(rows: list[list[str]], color: str, *, rounded: bool = False) -> str:
    """An HTML-like table label: one ``<TR>`` per row of cells (already escaped); a row of one cell
    spans the widest row."""
    width = max(len(r) for r in rows)
    out = [f'<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3" BGCOLOR="{color}"'
           + (' STYLE="rounded"' if rounded else "") + ">"]
    for r in rows:
        if len(r) == 1 and width > 1:
            out.append(f'<TR><TD COLSPAN="{width}">{r[0]}</TD></TR>')
        else:
            out.append("<TR>" + "".join(f"<TD>{c}</TD>" for c in r) + "</TR>")
    out.append("</TABLE>")
    return "<" + "".join(out) + ">"


def _count(n: int) -> str:
    return f"{n:,}"


def to_dot(model) -> str:
    """The DOT text of a model (an ``ir.ModelIR``, or its ``to_dict()``)."""
    name = _get(model, "name")
    nodes = _get(model, "nodes")
    uses = _get(model, "blocks") or []
    params, flops = _get(model, "params"), _get(model, "flops")
    title = (f"<B>{html(name)}</B>  ·  {_count(params)} parameters  ·  {_count(flops)} FLOPs per example")
    lines = [f"digraph {quote(name)} {{",
             f'    graph [rankdir=TB, fontname="{FONT}", fontsize=12, labelloc=t, labeljust=l, '
             f'nodesep=0.25, ranksep=0.3, label=<{title}>];',
             f'    node [shape=plain, fontname="{FONT}", fontsize=10];',
             '    edge [color="#606060", arrowsize=0.6];']

    for i in _get(model, "inputs"):
        dtype = _get(i, "dtype")
        rows = [[f"<B>{html(_get(i, 'name'))}</B>", "input" + (f" {dtype}" if dtype != "float32" else "")],
                [html(fmt_shape(_get(i, "shape")))]]
        lines.append(f"    {quote(_get(i, 'name'))} [label={_table(rows, INPUT_COLOR, rounded=True)}];")

    shapes = {_get(i, "name"): _get(i, "shape") for i in _get(model, "inputs")}
    shapes.update({_get(n, "id"): _get(n, "shape") for n in nodes})
    by_use: dict[str | None, list] = {}
    for n in nodes:
        by_use.setdefault(_get(n, "block"), []).append(n)
    children: dict[str | None, list] = {}
    for u in uses:
        children.setdefault(_get(u, "parent"), []).append(u)

    def node_line(n, indent: str) -> str:
        op = _get(n, "op")
        weights = _get(n, "weights")
        state = sum(_numel(_get(w, "shape")) for w in weights if not _get(w, "trainable"))
        rows = [[f"<B>{html(_get(n, 'id'))}</B>", html(op)]]
        sources = _get(n, "inputs")
        args = arguments(op, _get(n, "attrs"), len(shapes[sources[0]]) if sources and sources[0] in shapes else None)
        if args:
            rows.append([html(args)])
        size = [html(fmt_shape(_get(n, "shape")))]
        if _get(n, "params") or state:
            size.append(f"{_count(_get(n, 'params'))} params" + (f" + {_count(state)} state" if state else ""))
        if _get(n, "dtype") != "float32":
            size.append(html(_get(n, "dtype")))
        rows.append(size)
        kind = OPS[op].kind if op in OPS else "layer"
        label = _table(rows, COLORS.get(kind, "#ffffff"), rounded=kind == "merge" or len(_get(n, "inputs")) > 1)
        return f"{indent}{quote(_get(n, 'id'))} [label={label}];"

    def emit(use_id: str | None, indent: str) -> None:
        for n in by_use.get(use_id, []):
            lines.append(node_line(n, indent))
        for u in children.get(use_id, []):
            uid = _get(u, "id")
            args = ", ".join(f"{k} = {v['value'] if isinstance(v, dict) else v}" for k, v in _get(u, "args").items())
            label = f"<B>{html(uid)}</B>  ·  {html(_get(u, 'block'))}({html(args)})"
            lines.append(f"{indent}subgraph {quote('cluster_' + uid)} {{")
            lines.append(f'{indent}    graph [label=<{label}>, style="rounded,dashed", color="#8a8a8a", '
                         f'fontsize=10, margin=8];')
            emit(uid, indent + "    ")
            lines.append(f"{indent}}}")

    emit(None, "    ")
    for n in nodes:
        for src in _get(n, "inputs"):
            lines.append(f"    {quote(src)} -> {quote(_get(n, 'id'))};")
    for o in _get(model, "outputs"):
        oid = "output:" + _get(o, "name")
        rows = [[f"<B>{html(_get(o, 'name'))}</B>", "output"], [html(fmt_shape(_get(o, "shape")))]]
        lines.append(f"    {quote(oid)} [label={_table(rows, OUTPUT_COLOR, rounded=True)}];")
        lines.append(f"    {quote(_get(o, 'source'))} -> {quote(oid)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
