"""Fused steps of the graph executor: chains of nodes run as one step, with exactly the values and
gradients of the nodes run one by one (tests/test_graph.py checks that bit for bit).

The executor (:class:`nnc.runtime.graph.Graph`) asks :func:`plan` which chains to fuse; a fused
step runs where its last node stands, and its other nodes are skipped. Their intermediate values
are never stored, so a chain is fused only when each intermediate value feeds only the next node
of the chain and is not a model output.

* **maxpool after relu** (:class:`PoolRelu`): ``relu -> maxpool`` runs as ``maxpool -> relu``.
  max(relu(a), relu(b)) = relu(max(a, b)) since relu is non-decreasing, so the pooled values are
  the same, and so are the gradients: where a window's maximum is <= 0 both orders give the window
  no gradient (relu's derivative is 0 at and below 0), and where it is > 0 relu changes none of the
  window's candidates, so both pick the same first maximum. The relu then runs on the pooled
  values: a quarter of the data for 2x2 pools.

Tried and dropped: a stride-1 conv2d feeding its maxpool in the GEMM's own (F, N, Ho, Wp) layout
(the pool's backward writing straight into the buffer the weight GEMM reads) saves two full-size
copies per layer, but every later pass then runs over arrays in channel-major memory order, and
the epoch measured 5-15% slower than the relu commute alone.
"""
from __future__ import annotations

from ..compiler.ir import ModelIR, Node

#: pools that commute with a relu before them
MAX_POOLS = frozenset({"maxpool2d", "maxpool1d"})


class PoolRelu:
    """``relu -> maxpool`` run as ``maxpool -> relu``."""

    def __init__(self, graph, relu: int, pool: int):
        self.relu, self.pool = relu, pool
        self.nodes = (relu, pool)
        self.inputs = graph.nodes[relu].inputs
        self.graph = graph

    def forward(self, xs, weights, ctx):
        g = self.graph
        y, pool_cache = g.kernels[self.pool].forward(xs, {}, g.nodes[self.pool].attrs, ctx)
        y, relu_cache = g.kernels[self.relu].forward([y], {}, g.nodes[self.relu].attrs, ctx)
        return y, (pool_cache, relu_cache)

    def backward(self, dy, cache, need_dx: bool):
        kernels = self.graph.kernels
        pool_cache, relu_cache = cache
        (dr,), _ = kernels[self.relu].backward(dy, relu_cache)
        dxs, _ = kernels[self.pool].backward(dr, pool_cache)
        return dxs, {}


def plan(graph) -> dict[int, object]:
    """The fused steps of ``graph``: {index of the step's last node: step, index of every other
    node of a step: None}."""
    model: ModelIR = graph.model
    nodes: list[Node] = graph.nodes
    uses: dict[str, int] = {}
    for n in nodes:
        for src in n.inputs:
            uses[src] = uses.get(src, 0) + 1
    outputs = {o.source for o in model.outputs}

    def private(i: int) -> bool:
        """node i's value feeds only node i + 1 (as its only input) and is not an output."""
        n, nxt = nodes[i], nodes[i + 1]
        return uses.get(n.id) == 1 and n.id not in outputs and nxt.inputs == [n.id]

    out: dict[int, object] = {}
    for i in range(len(nodes) - 1):
        if nodes[i].op == "relu" and nodes[i + 1].op in MAX_POOLS and private(i) and i not in out:
            out[i], out[i + 1] = None, PoolRelu(graph, i, i + 1)
    return out
