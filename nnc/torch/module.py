"""The IR as one ``torch.fx.GraphModule``: each layer a submodule named as the weights contract
names it, so that ``state_dict`` keys are the contract's keys (``dense_1.weight``,
``stage2.down_1.conv2d_1.weight``, ``lstm_1.weight_ih_l0_reverse``, ``mha.out_proj.bias``).

A layer name with dots (a layer inside a block use) is a path of submodules, as PyTorch nests
them: ``stage2.down_1.conv2d_1`` is ``module.stage2.down_1.conv2d_1``. A path segment that would
shadow an attribute of ``torch.nn.Module`` or ``GraphModule`` (``forward``, ``training``, ``eval``,
``to``, ``type``, ``float``, ``half``, ``apply``, ``code``, ``graph``, ...) is escaped by
appending ``_`` (as often as needed to be unique among its siblings); :class:`KeyMap` translates
keys both ways. Layers without weights (activations, pools, shape ops) are submodules too, so the
generated code (``module.code``) reads like the spec, one call per stage.
"""
from __future__ import annotations

import keyword
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import fx, nn

from ..compiler.ir import ModelIR
from .lowerings import LOWERINGS, RunContext

#: names a submodule may not take: they would shadow an attribute of the module that holds it
RESERVED = frozenset(dir(fx.GraphModule)) | frozenset(vars(nn.Module())) | frozenset(vars(fx.GraphModule(nn.Module(), fx.Graph())))


@dataclass
class KeyMap:
    """Contract keys (``<layer>.<param>``) <-> ``state_dict`` keys (equal unless a name was escaped)."""

    to_module: dict[str, str] = field(default_factory=dict)
    to_contract: dict[str, str] = field(default_factory=dict)

    def add(self, contract: str, module: str) -> None:
        self.to_module[contract] = module
        self.to_contract[module] = contract

    @property
    def escaped(self) -> dict[str, str]:
        """Only the keys that differ: contract -> module."""
        return {c: m for c, m in self.to_module.items() if c != m}


class Paths:
    """Layer names -> submodule paths, each segment escaped where it would shadow an attribute."""

    def __init__(self):
        self._children: dict[str, dict[str, str]] = {"": {}}     # escaped parent path -> {segment: escaped}

    def path(self, name: str) -> str:
        parent = ""
        for segment in name.split("."):
            children = self._children.setdefault(parent, {})
            if segment not in children:
                taken = set(children.values())
                escaped = segment
                while escaped in RESERVED or escaped in taken or not escaped.isidentifier() or keyword.iskeyword(escaped):
                    escaped += "_"
                children[segment] = escaped
            parent = f"{parent}.{children[segment]}" if parent else children[segment]
        return parent


def camel_case(name: str) -> str:
    """``digits_cnn`` -> ``DigitsCnn`` (a class name; a leading digit gets a ``Model`` prefix)."""
    out = "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_") if part)
    return out if out[:1].isalpha() else f"Model{out}"


def build_module(model: ModelIR, weights: dict[str, np.ndarray], *, extra_outputs: tuple[str, ...] = (),
                 ctx: RunContext | None = None) -> tuple[fx.GraphModule, KeyMap, RunContext]:
    """The model as a GraphModule taking its inputs in order and returning a tuple: the model's
    outputs, then the values named in ``extra_outputs`` (node ids, e.g. the logits a fused loss
    reads). ``weights``: contract key -> NumPy array (copied into the module, in its dtype)."""
    ctx = ctx or RunContext()
    root = nn.Module()
    paths, keys = Paths(), KeyMap()
    targets: dict[str, str] = {}
    for node in model.nodes:
        target = paths.path(node.id)
        targets[node.id] = target
        w = {wt.name: weights[f"{node.id}.{wt.name}"] for wt in node.weights}
        trainable = {wt.name for wt in node.weights if wt.trainable}
        layer = LOWERINGS[node.op](node.op, node.attrs, w, trainable, ctx)
        *parents, leaf = target.split(".")
        owner = root
        for p in parents:
            if p not in owner._modules:
                owner.add_module(p, nn.Module())
            owner = owner._modules[p]
        owner.add_module(leaf, layer)
        for wt in node.weights:
            keys.add(f"{node.id}.{wt.name}", f"{target}.{wt.name}")
    graph = fx.Graph()
    env: dict[str, fx.Node] = {}
    for inp in model.inputs:
        name = inp.name if inp.name.isidentifier() and not keyword.iskeyword(inp.name) else f"input_{inp.name}"
        env[inp.name] = graph.placeholder(name)
    for node in model.nodes:
        env[node.id] = graph.call_module(targets[node.id], tuple(env[i] for i in node.inputs))
    graph.output(tuple(env[o.source] for o in model.outputs) + tuple(env[v] for v in extra_outputs))
    module = fx.GraphModule(root, graph, class_name=camel_case(model.name))
    return module, keys, ctx


def tensors_by_key(module: nn.Module, keys: KeyMap) -> dict[str, torch.Tensor]:
    """Contract key -> the module's parameter or buffer (live; in contract order)."""
    own = dict(module.named_parameters())
    own.update(module.named_buffers())
    return {c: own[m] for c, m in keys.to_module.items()}
