"""``nnc summary``: a table of layers with output shapes, parameters and FLOPs, and totals."""
from __future__ import annotations

from .ir import Program
from ..errors import fmt_shape


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def summary_rows(program: Program) -> list[tuple[str, str, str, str, str]]:
    """(layer, op, output shape, params, FLOPs) for every input and node, in graph order."""
    m = program.model
    rows = [(i.name, "input" + (" int64" if i.dtype == "int64" else ""), fmt_shape(i.shape), "0", "0")
            for i in m.inputs]
    for n in m.nodes:
        rows.append((n.id, n.op, fmt_shape(n.shape), f"{n.params:,}", f"{n.flops:,}"))
    return rows


def render_summary(program: Program) -> str:
    """The table ``nnc summary`` prints. FLOPs are per example (2 x multiply-adds)."""
    m = program.model
    header = ("layer", "op", "output shape", "params", "FLOPs")
    rows = summary_rows(program)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    right = {3, 4}

    def line(r):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [f"model {m.name}", "", line(header), rule, *(line(r) for r in rows), rule]
    out.append(line(("total", "", "", f"{m.params:,}", f"{m.flops:,}")))
    width = 8 if program.train is not None and program.train.dtype == "float64" else 4
    dtype = "float64" if width == 8 else "float32"
    out.append("")
    out.append(f"trainable parameters: {m.params:,} ({_human_bytes(m.params * width)} as {dtype})")
    if m.state:
        out.append(f"non-trainable state:  {m.state:,} ({_human_bytes(m.state * width)}, batchnorm running statistics)")
    outs = ", ".join(f"{o.name} {fmt_shape(o.shape)}" for o in m.outputs)
    out.append(f"outputs: {outs}")
    out.append(f"FLOPs per example: {m.flops:,}")
    return "\n".join(out)
