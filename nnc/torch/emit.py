"""``nnc compile SPEC --emit torch``: the model as a standalone, readable Python module.

The module needs only torch and numpy (never nnc): one ``torch.nn.Module`` subclass named after
the model in CamelCase, built with no arguments, whose layers are PyTorch's own modules where one
has nnc's semantics (``nn.Linear``, ``nn.Conv2d``, ``nn.LSTM``, ``nn.MultiheadAttention``, ...)
and a few lines of ``torch.nn.functional`` elsewhere; plus ``load_weights(module, path)`` for an nnc
weights file. Submodules carry the layer names, so ``state_dict`` keys are the weights contract's
but for the documented exceptions in ``KEYS`` (a single-layer recurrent layer's ``weight_ih`` is
PyTorch's ``weight_ih_l0``; an escaped name that would shadow an ``nn.Module`` attribute).

In eval mode its outputs equal the NumPy runtime's; :func:`verify` checks that on a seeded random
batch before the file is written (E806 otherwise). In train mode its dropout draws from torch's
generator (the torch engine, not this file, reproduces nnc's training run).
"""
from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..compiler.ir import ModelIR, Node, Program
from ..errors import NncError

ATOL, RTOL = 1e-5, 1e-4


@dataclass
class _Code:
    init: list[str] = field(default_factory=list)       # lines of __init__
    body: list[str] = field(default_factory=list)       # lines of forward
    helpers: set[str] = field(default_factory=set)      # helper classes used
    keys: dict[str, str] = field(default_factory=dict)  # contract key -> state_dict key, where they differ


_HELPERS = {
    "normalize": '''
class Normalize(nn.Module):
    """(x - mean) / sqrt(var + eps) with fixed statistics per index of one axis (fitted by nnc)."""

    def __init__(self, size, dim, eps):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))

    def forward(self, x):
        shape = [1] * x.dim()
        shape[self.dim] = -1
        return (x - self.mean.view(shape)) / torch.sqrt(self.var.view(shape) + self.eps)
''',
    "positional_embedding": '''
class PositionalEmbedding(nn.Module):
    """Adds a learned weight [T, E] to a sequence [N, T, E]."""

    def __init__(self, steps, features):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(steps, features))

    def forward(self, x):
        return x + self.weight
''',
    "positional_encoding": '''
class PositionalEncoding(nn.Module):
    """Adds the fixed sinusoids of "Attention Is All You Need": PE[t, 2i] = sin(t / 10000^(2i/E)),
    PE[t, 2i+1] = cos(t / 10000^(2i/E))."""

    def __init__(self, steps, features):
        super().__init__()
        j = np.arange(features)
        angle = np.arange(steps)[:, None] * 10000.0 ** (-(j - j % 2) / features)
        pe = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
        self.register_buffer("pe", torch.from_numpy(pe).float(), persistent=False)

    def forward(self, x):
        return x + self.pe.to(x.dtype)
''',
}

_ACTIVATIONS = {
    "relu": "F.relu({x})", "sigmoid": "torch.sigmoid({x})", "tanh": "torch.tanh({x})", "selu": "F.selu({x})",
    "gelu": "F.gelu({x})", "softplus": "F.softplus({x})", "silu": "F.silu({x})", "relu6": "F.relu6({x})",
    "hardsigmoid": "F.hardsigmoid({x})", "hardswish": "F.hardswish({x})", "step": "({x} > 0).to({x}.dtype)",
    "identity": "{x}", "linear": "{x}",
}


def _tuple(v) -> str:
    v = list(v)
    return str(v[0]) if len(set(v)) == 1 else "(" + ", ".join(map(str, v)) + ")"


def _options(**options: tuple[str, str]) -> str:
    """``, key=value`` for each option whose value (rendered) differs from its default."""
    return "".join(f", {k}={v}" for k, (v, default) in options.items() if v != default)


def _num(v) -> str:
    return repr(float(v))


class _Emitter:
    def __init__(self, program: Program):
        from .module import RESERVED, Paths
        self.program, self.model = program, program.model
        self.paths = Paths()
        self.reserved = RESERVED
        self.code = _Code()
        self.containers: set[str] = set()
        consumers: dict[str, list[int]] = {}
        for i, n in enumerate(self.model.nodes):
            for src in n.inputs:
                consumers.setdefault(src, []).append(i)
        outputs = {o.source for o in self.model.outputs}
        self.var: dict[str, str] = {}
        taken = {self._ident(i.name) for i in self.model.inputs}
        for inp in self.model.inputs:
            self.var[inp.name] = self._ident(inp.name)
        chain = "x"
        while chain in taken:
            chain += "_"
        for i, n in enumerate(self.model.nodes):
            # NOTE: a value read once, by the next statement, is `x`; others keep their names
            if consumers.get(n.id) == [i + 1] and n.id not in outputs:
                self.var[n.id] = chain
            else:
                name = self._ident(n.id.replace(".", "_"))
                while name in taken or name in (chain, "self", "torch", "nn", "F", "np", "math"):
                    name += "_"
                taken.add(name)
                self.var[n.id] = name

    @staticmethod
    def _ident(name: str) -> str:
        return name if name.isidentifier() and not keyword.iskeyword(name) else f"v_{name}"

    def attr(self, node: Node) -> str:
        """``self.a.b.c`` for a layer's submodule (containers declared on the way)."""
        path = self.paths.path(node.id)
        parts = path.split(".")
        for k in range(1, len(parts)):
            prefix = ".".join(parts[:k])
            if prefix not in self.containers:
                self.containers.add(prefix)
                self.code.init.append(f"self.{prefix} = nn.Module()")
        for w in node.weights:
            self.code.keys[f"{node.id}.{w.name}"] = f"{path}.{w.name}"
        return f"self.{path}"

    def emit(self) -> str:
        for node in self.model.nodes:
            xs = [self.var[i] for i in node.inputs]
            shapes = [tuple(self.model.shape_of(i)) for i in node.inputs]
            expr = self.stage(node, xs, shapes)
            self.code.body.append(f"{self.var[node.id]} = {expr}  # {node.id}: {node.op} -> {list(node.shape)}")
        outs = [self.var[o.source] for o in self.model.outputs]
        self.code.body.append("return " + (outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"))
        return self.render()

    # ------------------------------------------------------------------------------------------

    def layer(self, node: Node, constructor: str) -> str:
        ref = self.attr(node)
        self.code.init.append(f"{ref} = {constructor}")
        return ref

    def stage(self, node: Node, xs: list[str], shapes: list[tuple]) -> str:
        return EMIT[node.op](self, _Stage(node, node.attrs, xs, shapes))

    # ------------------------------------------------------------------------------------------

    def render(self) -> str:
        from ..version import __version__
        model = self.model
        name = class_name(self.program)
        args = ", ".join(self.var[i.name] for i in model.inputs)
        shapes = ", ".join(f"{self.var[i.name]}: (N, {', '.join(map(str, i.shape))}) {i.dtype}"
                           for i in model.inputs)
        out_shapes = ", ".join(f"(N, {', '.join(map(str, o.shape))})" for o in model.outputs)
        keys = {c: m for c, m in self.code.keys.items() if c != m}
        lines = [
            f'"""{model.name}: generated by nnc {__version__} from {self.program.path or "a spec"} '
            "(`nnc compile --emit torch`).",
            "",
            "Needs only torch and numpy:",
            "",
            f"    model = {name}()",
            f'    load_weights(model, "runs/{model.name}/weights.npz")   # a weights file of nnc',
            "    model.eval()",
            f"    y = model({args})",
            "",
            f"Inputs {shapes}; output{'s' if len(model.outputs) > 1 else ''} {out_shapes}. In eval mode the "
            "outputs equal nnc's",
            "runtime's (verified when this file was written).",
            '"""',
            "import numpy as np",
            "import torch",
            "import torch.nn.functional as F",
            "from torch import nn",
            "",
            "#: weights-file keys that are not this module's state_dict keys (e.g. PyTorch's `_l0` of a recurrent layer)",
            "KEYS = {" + "".join(f"\n    {c!r}: {m!r}," for c, m in keys.items()) + ("\n}" if keys else "}"),
            "",
        ]
        for h in sorted(self.code.helpers):
            lines += _HELPERS[h].strip("\n").split("\n") + ["", ""]
        lines += [
            "",
            f"class {name}(nn.Module):",
            f'    """The model `{model.name}` ({model.params:,} parameters)."""',
            "",
            "    def __init__(self):",
            "        super().__init__()",
            *(f"        {line}" for line in self.code.init),
            "",
            f"    def forward(self, {args}):",
            *(f"        {line}" for line in self.code.body),
            "",
            "",
            "def load_weights(module, path):",
            '    """Load an nnc weights file (.npz, keys `<layer>.<param>`) into `module`; every key must match."""',
            "    with np.load(path, allow_pickle=False) as archive:",
            "        arrays = {KEYS.get(k, k): archive[k] for k in archive.files}",
            "    own = module.state_dict()",
            '    missing = [k for k in own if k not in arrays and not k.endswith("num_batches_tracked")]',
            "    extra = [k for k in arrays if k not in own]",
            "    if missing or extra:",
            '        raise KeyError(f"{path}: weights do not fit the model: missing {missing}, unexpected {extra}")',
            "    module.load_state_dict({k: torch.from_numpy(v).to(own[k].dtype) for k, v in arrays.items()}, "
            "strict=False)",
            "    return module",
            "",
        ]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# the code of each op: EMIT[op](emitter, stage) -> the expression of its value

@dataclass
class _Stage:
    node: Node
    a: dict
    xs: list[str]                 # the inputs' variables
    shapes: list[tuple]           # the inputs' per-example shapes

    @property
    def x(self) -> str:
        return self.xs[0]

    @property
    def s(self) -> tuple:
        return self.shapes[0]


EMIT: dict[str, "Callable[[_Emitter, _Stage], str]"] = {}


def _emits(*ops: str):
    def deco(fn):
        for op in ops:
            EMIT[op] = fn
        return fn
    return deco


for _op, _template in _ACTIVATIONS.items():
    EMIT[_op] = lambda em, st, _t=_template: _t.format(x=st.x)


@_emits("dense")
def _dense(em, st):
    units, options = st.a["units"], _options(bias=(str(st.a["bias"]), "True"))
    return f"{em.layer(st.node, f'nn.Linear({st.s[-1]}, {units}{options})')}({st.x})"


@_emits("conv2d", "conv1d")
def _conv(em, st):
    a, s, nd = st.a, st.s, 2 if st.node.op == "conv2d" else 1
    pads = a["pads"]
    begin, end = pads[:nd], pads[nd:]
    sym = begin == end
    options = _options(stride=(_tuple(a["stride"]), "1"), padding=(_tuple(begin) if sym else "0", "0"),
                       dilation=(_tuple(a["dilation"]), "1"), groups=(str(a["groups"]), "1"),
                       bias=(str(a["bias"]), "True"))
    ref = em.layer(st.node, f"nn.Conv{nd}d({s[0]}, {a['filters']}, kernel_size={_tuple(a['kernel'])}{options})")
    if sym:
        return f"{ref}({st.x})"
    pad = (pads[1], pads[3], pads[0], pads[2]) if nd == 2 else (pads[0], pads[1])   # SAME: the odd pad last
    return f"{ref}(F.pad({st.x}, {pad}))"


@_emits("conv2d_transpose")
def _conv_transpose(em, st):
    a = st.a
    options = _options(stride=(_tuple(a["stride"]), "1"), padding=(_tuple(a["padding"]), "0"),
                       output_padding=(_tuple(a["output_padding"]), "0"), groups=(str(a["groups"]), "1"),
                       bias=(str(a["bias"]), "True"), dilation=(_tuple(a["dilation"]), "1"))
    ref = em.layer(st.node, f"nn.ConvTranspose2d({st.s[0]}, {a['filters']}, kernel_size={_tuple(a['kernel'])}{options})")
    return f"{ref}({st.x})"


@_emits("upsample2d")
def _upsample(em, st):
    sh, sw = st.a["scale"]
    if st.a["mode"] == "nearest":      # NOTE: exact repetition, no index arithmetic
        return f"{st.x}.repeat_interleave({sh}, dim=2).repeat_interleave({sw}, dim=3)"
    return f"F.interpolate({st.x}, scale_factor=({float(sh)}, {float(sw)}), mode='bilinear', align_corners=False)"


@_emits("maxpool2d", "avgpool2d", "maxpool1d", "avgpool1d")
def _pool(em, st):
    a, op = st.a, st.node.op
    extra = ", count_include_pad=True" if op.startswith("avg") else ""
    return (f"F.{op[:3]}_pool{op[-2:]}({st.x}, {_tuple(a['size'])}, {_tuple(a['stride'])}, {_tuple(a['padding'])}, "
            f"ceil_mode={a['ceil_mode']}{extra})")


@_emits("globalavgpool2d", "globalmaxpool2d", "globalavgpool1d", "globalmaxpool1d")
def _global_pool(em, st):
    op = st.node.op
    return f"{st.x}.{'mean' if 'avg' in op else 'amax'}(dim={'(2, 3)' if op.endswith('2d') else '2'})"


EMIT["flatten"] = lambda em, st: f"{st.x}.flatten(1)"
EMIT["reshape"] = lambda em, st: f"{st.x}.reshape({st.x}.shape[0], {', '.join(map(str, st.a['shape']))})"
EMIT["transpose"] = lambda em, st: f"{st.x}.permute(0, {', '.join(str(p + 1) for p in st.a['perm'])})"
EMIT["select"] = lambda em, st: f"{st.x}.select({st.a['axis'] + 1}, {st.a['index']})"
EMIT["slice"] = lambda em, st: f"{st.x}.narrow({st.a['axis'] + 1}, {st.a['start']}, {st.a['end'] - st.a['start']})"
EMIT["mean"] = lambda em, st: f"{st.x}.mean(dim={st.a['axis'] + 1})"
EMIT["sum"] = lambda em, st: f"{st.x}.sum(dim={st.a['axis'] + 1})"
EMIT["max"] = lambda em, st: f"{st.x}.amax(dim={st.a['axis'] + 1})"
EMIT["concat"] = lambda em, st: f"torch.cat([{', '.join(st.xs)}], dim={st.a['axis'] + 1})"
EMIT["softmax"] = lambda em, st: f"F.softmax({st.x}, dim={st.a['axis'] + 1})"
EMIT["log_softmax"] = lambda em, st: f"F.log_softmax({st.x}, dim={st.a['axis'] + 1})"
EMIT["leaky_relu"] = lambda em, st: f"F.leaky_relu({st.x}, {_num(st.a['alpha'])})"
EMIT["elu"] = lambda em, st: f"F.elu({st.x}, {_num(st.a['alpha'])})"
EMIT["clip"] = lambda em, st: f"torch.clamp({st.x}, {_num(st.a['min'])}, {_num(st.a['max'])})"
EMIT["dropout"] = lambda em, st: f"F.dropout({st.x}, {_num(st.a['rate'])}, training=self.training)"


@_emits("add", "multiply")
def _broadcast(em, st):
    rank = max(len(t) for t in st.shapes)      # a lower-rank input lines up with the last axes
    parts = [v if len(t) == rank else f"{v}.reshape({v}.shape[0], {', '.join(map(str, (1,) * (rank - len(t)) + t))})"
             for v, t in zip(st.xs, st.shapes)]
    return f" {'+' if st.node.op == 'add' else '*'} ".join(parts)


@_emits("batchnorm")
def _batchnorm(em, st):
    a, s = st.a, st.s
    cls = "nn.BatchNorm2d" if len(s) == 3 else "nn.BatchNorm1d"
    momentum = _num(round(1 - a["momentum"], 12))        # NOTE: PyTorch's momentum is 1 - nnc's
    eps = _num(a["eps"])
    return f"{em.layer(st.node, f'{cls}({s[0]}, eps={eps}, momentum={momentum})')}({st.x})"


EMIT["layernorm"] = lambda em, st: f"{em.layer(st.node, 'nn.LayerNorm(' + str(st.s[-1]) + ', eps=' + _num(st.a['eps']) + ')')}({st.x})"
EMIT["embedding"] = lambda em, st: f"{em.layer(st.node, 'nn.Embedding(' + str(st.a['vocab']) + ', ' + str(st.a['dim']) + ')')}({st.x})"


@_emits("normalize")
def _normalize(em, st):
    em.code.helpers.add("normalize")
    a = st.a
    return f"{em.layer(st.node, 'Normalize(' + ', '.join((str(st.s[a['axis']]), str(a['axis'] + 1), _num(a['eps']))) + ')')}({st.x})"


@_emits("positional_embedding", "positional_encoding")
def _positional(em, st):
    op = st.node.op
    em.code.helpers.add(op)
    cls = "PositionalEmbedding" if op == "positional_embedding" else "PositionalEncoding"
    return f"{em.layer(st.node, cls + '(' + str(st.s[0]) + ', ' + str(st.s[1]) + ')')}({st.x})"


@_emits("rnn", "lstm", "gru")
def _recurrent(em, st):
    node, a, s, x = st.node, st.a, st.s, st.x
    cls = {"rnn": "nn.RNN", "lstm": "nn.LSTM", "gru": "nn.GRU"}[node.op]
    extra = f", nonlinearity='{a['activation']}'" if node.op == "rnn" else ""
    d = 2 if a["bidirectional"] else 1
    options = _options(num_layers=(str(a["layers"]), "1"), bidirectional=(str(a["bidirectional"]), "False"),
                       dropout=(_num(a["dropout"]), "0.0"))
    ref = em.layer(node, f"{cls}({s[-1]}, {a['units']}, batch_first=True{options}{extra})")
    if a["suffixes"] == [[""]]:           # one forward layer: the contract drops PyTorch's `_l0`
        for w in node.weights:
            em.code.keys[f"{node.id}.{w.name}"] = f"{ref[len('self.'):]}.{w.name}_l0"
    if a["return_sequences"]:
        return f"{ref}({x})[0]"
    h = "[1][0]" if node.op == "lstm" else "[1]"          # h_n: the last state of each layer and direction
    return f"{ref}({x}){h}[-1]" if d == 1 else f"torch.cat(list({ref}({x}){h}[-2:]), dim=-1)"


@_emits("multihead_attention")
def _attention(em, st):
    a = st.a
    options = _options(dropout=(_num(a["dropout"]), "0.0"), bias=(str(a["bias"]), "True"))
    ref = em.layer(st.node, f"nn.MultiheadAttention({st.s[-1]}, {a['heads']}{options}, batch_first=True)")
    q, kv = st.xs[0], st.xs[-1]
    if not a["causal"]:
        return f"{ref}({q}, {kv}, {kv}, need_weights=False)[0]"
    t = st.s[0]
    mask = f"torch.triu(torch.ones({t}, {t}, dtype=torch.bool, device={q}.device), 1)"   # j > i: masked
    return f"{ref}({q}, {kv}, {kv}, need_weights=False, attn_mask={mask})[0]"



def class_name(program: Program) -> str:
    """The emitted module's class: the model's name in CamelCase (``digits_cnn`` -> ``DigitsCnn``)."""
    from .module import camel_case
    name = camel_case(program.model.name)
    return name + "Model" if name in ("Normalize", "PositionalEmbedding", "PositionalEncoding") else name


def emit_torch(program: Program) -> str:
    """The source of the standalone module for ``program``'s model."""
    return _Emitter(program).emit()


def _random_inputs(model: ModelIR, batch: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for inp in model.inputs:
        shape = (batch, *inp.shape)
        if inp.dtype == "int64":
            vocab = min((int(n.attrs["vocab"]) for n in model.embeddings_reading(inp.name)), default=10)
            out[inp.name] = rng.integers(0, vocab, size=shape, dtype=np.int64)
        else:
            out[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def load_module(program: Program, source: str, weights: dict[str, np.ndarray]):
    """The emitted module ``source`` (from :func:`emit_torch`) built, with ``weights`` loaded by
    its own ``load_weights``, in eval mode."""
    import tempfile
    import types
    from pathlib import Path

    model = program.model
    namespace = types.ModuleType(f"nnc_emitted_{model.name}")
    exec(compile(source, f"<{model.name}.py>", "exec"), namespace.__dict__)
    module = getattr(namespace, class_name(program))()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.npz"
        np.savez(path, **weights)
        namespace.load_weights(module, path)
    return module.eval()


def verify(program: Program, source: str, weights: dict[str, np.ndarray]) -> float:
    """Run the emitted module (eval, float32, a seeded random batch) against the NumPy runtime:
    the largest difference, or E806."""
    import torch

    from ..runtime.graph import Graph
    model = program.model
    module = load_module(program, source, weights)
    inputs = _random_inputs(model)
    with torch.no_grad():
        got = module(*(torch.from_numpy(inputs[i.name]) for i in model.inputs))
    got = got if isinstance(got, tuple) else (got,)
    want = Graph(model, "float32").forward(inputs, weights, training=False)
    worst = 0.0
    for o, g in zip(model.outputs, got):
        g, w = g.numpy().astype(np.float64), want[o.name].astype(np.float64)
        if g.shape != w.shape:
            raise NncError.single("E806", f"the emitted torch module gives output `{o.name}` the shape {list(g.shape)}, "
                                  f"the NumPy runtime {list(w.shape)}", hint=_BUG)
        diff = np.abs(g - w)
        bad = ~(diff <= ATOL + RTOL * np.abs(w))
        if bad.any():
            where = [int(i) for i in np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), diff.shape)]
            raise NncError.single("E806", f"the emitted torch module and the NumPy runtime disagree on output "
                                  f"`{o.name}`: max |diff| {float(diff.max()):.3g} at {where}; tolerance atol={ATOL}, "
                                  f"rtol={RTOL}", hint=_BUG)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
    return worst


_BUG = "this is a bug in nnc's torch emitter; please report it with the spec (--no-verify writes the file anyway)"
