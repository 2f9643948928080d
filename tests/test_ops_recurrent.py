"""Bidirectional and stacked recurrent layers (`rnn`, `lstm`, `gru` with `bidirectional`, `layers`,
`dropout`): the contract of docs/language.md 6.7 and 8.2 checked end to end against PyTorch.

- weight names, shapes and order equal PyTorch's ``state_dict()``; parameter counts equal the sum of
  ``numel`` over torch's parameters; FLOPs equal ``torch.utils.flop_counter`` on torch's module;
- a compiled model's forward and gradients (through ``Graph``) equal torch's module with the nnc
  weights loaded by name (``load_state_dict(strict=True)``), in training without dropout and in
  evaluation with dropout (PyTorch's masks differ from nnc's, its evaluation results do not);
- dropout between layers: training only, masks from the run's generator, gradients through them;
- initialisation per matrix (forget bias one, orthogonal recurrent gate blocks);
- E220 located, the ONNX layout of stacked directions, and a bidirectional 2-layer LSTM checked,
  trained (``nnc train`` and ``nnc.api``), exported verified, its weights saved and loaded back.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import nnc
from nnc.cli import main
from nnc.compiler.lower import compile_source
from nnc.errors import NncError
from nnc.runtime.graph import Graph
from nnc.runtime.kernels import KERNELS, Ctx

torch = pytest.importorskip("torch")

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
TORCH = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def program_of(body: str, name: str = "m"):
    return compile_source(f"model {name} {{\n{body}\n}}\n", f"{name}.nnspec")


def layer_spec(op: str, units: int, *, seq=False, bidirectional=False, layers=1, dropout=0.0,
               activation=None) -> str:
    args = [str(units)]
    if seq:
        args.append("return_sequences=true")
    if activation:
        args.append(f"activation={activation}")
    if bidirectional:
        args.append("bidirectional=true")
    if layers != 1:
        args.append(f"layers={layers}")
    if dropout:
        args.append(f"dropout={dropout}")
    return f"{op}({', '.join(args)})"


def torch_module(op, f, units, *, bidirectional, layers, dropout=0.0, activation=None):
    kw = {"nonlinearity": activation} if op == "rnn" and activation else {}
    return TORCH[op](f, units, num_layers=layers, bidirectional=bidirectional, dropout=dropout,
                     batch_first=True, **kw).double()


# (op, activation, bidirectional, layers, return_sequences)
CONFIGS = [
    ("lstm", None, True, 2, False), ("lstm", None, True, 2, True), ("lstm", None, True, 1, False),
    ("lstm", None, False, 3, True), ("lstm", None, False, 1, False),
    ("gru", None, True, 2, False), ("gru", None, True, 2, True), ("gru", None, False, 2, False),
    ("rnn", "tanh", True, 2, True), ("rnn", "relu", True, 2, False), ("rnn", "relu", False, 2, True),
    ("rnn", "tanh", True, 1, True),
]


def _cid(c):
    op, act, bi, layers, seq = c
    return f"{op}{'-' + act if act else ''}{'-bi' if bi else ''}-l{layers}-{'seq' if seq else 'last'}"


# ----------------------------------------------------------------------------------------------
# weights, parameters and FLOPs

@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
@pytest.mark.parametrize("config", CONFIGS, ids=_cid)
def test_weights_params_and_flops_equal_torchs_module(config):
    op, act, bi, layers, seq = config
    t, f, u = 7, 3, 5
    program = program_of(f"input x: [{t}, {f}]\n"
                         + layer_spec(op, u, seq=seq, bidirectional=bi, layers=layers, activation=act))
    (node,) = program.model.nodes
    mod = torch_module(op, f, u, bidirectional=bi, layers=layers, activation=act)
    d = 2 if bi else 1
    assert node.shape == ([t, d * u] if seq else [d * u])
    names = [w.name for w in node.weights]
    torch_names = list(mod.state_dict())
    if layers == 1 and not bi:                 # the contract keeps the single-layer names
        assert names == [k.removesuffix("_l0") for k in torch_names]
    else:                                      # PyTorch's names, in PyTorch's order
        assert names == torch_names
    assert [tuple(w.shape) for w in node.weights] == [tuple(v.shape) for v in mod.state_dict().values()]
    assert node.params == sum(p.numel() for p in mod.parameters()) == program.model.params
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.zeros(1, t, f, dtype=torch.float64)
    # NOTE: without oneDNN torch's CPU LSTM runs as matmuls the counter sees (GRU / RNN always do)
    with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
        mod(x)
    assert node.flops == counter.get_total_flops() > 0


def test_params_of_the_contract_example():
    # lstm(32, bidirectional=true, layers=2) on [10, 8]: torch.nn.LSTM(8, 32, 2, bidirectional=True)
    program = program_of("input x: [10, 8]\nlstm(32, bidirectional=true, layers=2, dropout=0.2)")
    first = 2 * 4 * (32 * 8 + 32 * 32 + 2 * 32)
    second = 2 * 4 * (32 * 64 + 32 * 32 + 2 * 32)
    assert program.model.params == first + second == 35_840
    assert program.model.nodes[0].shape == [64]


# ----------------------------------------------------------------------------------------------
# a compiled model against torch's module, weights copied in by name

def _graph_and_torch(config, dropout=0.0, t=6, f=3, u=4):
    op, act, bi, layers, seq = config
    program = program_of(f"input x: [{t}, {f}]\n" + layer_spec(op, u, seq=seq, bidirectional=bi, layers=layers,
                                                                dropout=dropout, activation=act))
    graph = Graph(program.model, "float64")
    rng = np.random.default_rng(7)
    weights = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in graph.init_weights(3).items()}
    (node,) = program.model.nodes
    mod = torch_module(op, f, u, bidirectional=bi, layers=layers, dropout=dropout, activation=act)
    simple = layers == 1 and not bi
    state = {(k.split(".", 1)[1] + ("_l0" if simple else "")): torch.tensor(v) for k, v in weights.items()}
    mod.load_state_dict(state, strict=True)          # every key by its contract name
    return program, graph, weights, node, mod


def _torch_output(mod, x, seq, bi):
    out, h_n = mod(x)
    h_n = h_n[0] if isinstance(h_n, tuple) else h_n
    return out if seq else torch.cat(list(h_n[-(2 if bi else 1):]), dim=-1)


@pytest.mark.parametrize("config", CONFIGS, ids=_cid)
def test_compiled_model_forward_and_gradients_equal_torch(config):
    op, act, bi, layers, seq = config
    program, graph, weights, node, mod = _graph_and_torch(config)
    x = np.random.default_rng(1).standard_normal((4, 6, 3))
    outs, tape = graph.forward({"x": x}, weights, training=True, keep=True)
    y = outs[program.model.outputs[0].name]
    R = np.random.default_rng(2).standard_normal(y.shape)
    grads = graph.backward(tape, {node.id: R})
    tx = torch.tensor(x, requires_grad=True)
    ty = _torch_output(mod, tx, seq, bi)
    (ty * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    simple = layers == 1 and not bi
    for key, g in grads.items():
        name = key.split(".", 1)[1] + ("_l0" if simple else "")
        np.testing.assert_allclose(g, getattr(mod, name).grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=key)
    assert set(grads) == set(weights)
    # the input's gradient: the kernel's own, against torch's
    _, cache = KERNELS[op].forward([x], {k.split(".", 1)[1]: v for k, v in weights.items()}, node.attrs,
                                   Ctx(training=True))
    (dx,), _ = KERNELS[op].backward(R, cache)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("config", [c for c in CONFIGS if c[3] > 1], ids=_cid)
def test_with_dropout_evaluation_equals_torch_eval(config):
    op, act, bi, layers, seq = config
    program, graph, weights, node, mod = _graph_and_torch(config, dropout=0.4)
    mod.eval()
    x = np.random.default_rng(4).standard_normal((5, 6, 3))
    y = graph.forward({"x": x}, weights, training=False)[program.model.outputs[0].name]
    with torch.no_grad():
        ty = _torch_output(mod, torch.tensor(x), seq, bi)
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-10, atol=1e-12)
    # training drops: another output, the same for the same generator state, unbiased on average
    yt = [graph.forward({"x": x}, weights, training=True, rng=np.random.default_rng(s))[program.model.outputs[0].name]
          for s in (0, 0, 1)]
    np.testing.assert_array_equal(yt[0], yt[1])
    assert not np.allclose(yt[0], y) and not np.allclose(yt[0], yt[2])


def test_dropout_masks_are_drawn_between_layers_as_the_dropout_op_draws_them():
    """Layer 2 reads layer 1's sequence times the mask the `dropout` kernel would draw from the
    same generator; nothing is drawn for layer 1's input or in evaluation."""
    program, graph, weights, node, mod = _graph_and_torch(("gru", None, True, 2, True), dropout=0.5)
    x = np.random.default_rng(5).standard_normal((3, 6, 3))
    w = {k.split(".", 1)[1]: v for k, v in weights.items()}
    y, _ = KERNELS["gru"].forward([x], w, node.attrs, Ctx(training=True, rng=np.random.default_rng(9)))
    # by hand: layer 1 without dropout, the dropout kernel on its sequence, layer 2
    a1 = dict(node.attrs, layers=1, dropout=0.0, suffixes=[node.attrs["suffixes"][0]])
    h1, _ = KERNELS["gru"].forward([x], w, a1, Ctx())
    rng = np.random.default_rng(9)
    dropped, _ = KERNELS["dropout"].forward([h1], {}, {"rate": 0.5}, Ctx(training=True, rng=rng))
    w2 = {k.replace("_l1", "_l0"): v for k, v in w.items() if "_l1" in k}
    h2, _ = KERNELS["gru"].forward([dropped], w2, a1, Ctx())
    np.testing.assert_array_equal(y, h2)
    # evaluation draws nothing from the generator
    rng = np.random.default_rng(9)
    KERNELS["gru"].forward([x], w, node.attrs, Ctx(training=False, rng=rng))
    assert rng.random() == np.random.default_rng(9).random()


# ----------------------------------------------------------------------------------------------
# initialisation: as a single layer, per matrix

def test_every_matrix_is_initialised_like_a_single_layer():
    program = program_of("input x: [6, 3]\nlstm(4, bidirectional=true, layers=2)")
    w = Graph(program.model).init_weights(0)
    (node,) = program.model.nodes
    assert list(w) == [f"lstm_1.{x.name}" for x in node.weights]
    u = 4
    for sfx in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        bih, bhh, whh = w[f"lstm_1.bias_ih{sfx}"], w[f"lstm_1.bias_hh{sfx}"], w[f"lstm_1.weight_hh{sfx}"]
        np.testing.assert_array_equal(bih, np.r_[np.zeros(u), np.ones(u), np.zeros(2 * u)])  # forget gate: 1
        np.testing.assert_array_equal(bhh, np.zeros(4 * u))
        for g in range(4):                                  # each gate block orthogonal on its own
            block = whh[g * u:(g + 1) * u].astype(np.float64)
            np.testing.assert_allclose(block @ block.T, np.eye(u), atol=1e-5)
        wih = w[f"lstm_1.weight_ih{sfx}"]
        fan_in = 3 if sfx.startswith("_l0") else 8
        assert wih.shape == (16, fan_in)
        assert np.abs(wih).max() <= np.sqrt(6 / (fan_in + u))   # glorot_uniform per gate block
    # distinct draws for every matrix
    assert not np.array_equal(w["lstm_1.weight_hh_l0"], w["lstm_1.weight_hh_l0_reverse"])


# ----------------------------------------------------------------------------------------------
# errors

def test_dropout_with_one_layer_is_a_located_error_with_a_hint():
    src = "model m {\n    input x: [6, 3]\n    gru(4, bidirectional=true, dropout=0.25)\n}\n"
    with pytest.raises(NncError) as info:
        compile_source(src, "m.nnspec")
    (d,) = info.value.diagnostics
    assert d.code == "E220"
    assert (d.span.line, d.span.column) == (3, 32)           # the `dropout=0.25` argument
    assert "layers=1" in d.message and "layers=2" in d.hint and "dropout(0.25)" in d.hint
    # dropout=0 with one layer, and dropout with two layers, are fine
    program_of("input x: [6, 3]\ngru(4, dropout=0)")
    program_of("input x: [6, 3]\ngru(4, layers=2, dropout=0.25)")


@pytest.mark.parametrize("arg, code", [("layers=0", "E402"), ("dropout=1", "E402"), ("layers=1.5", "E401"),
                                       ("bidirectional=1", "E401"), ("dropout=-0.1", "E402")])
def test_bad_values(arg, code):
    with pytest.raises(NncError) as info:
        program_of(f"input x: [6, 3]\nlstm(4, layers=2, {arg})" if "layers" not in arg
                   else f"input x: [6, 3]\nlstm(4, {arg})")
    assert [d.code for d in info.value.diagnostics] == [code]


# ----------------------------------------------------------------------------------------------
# ONNX

def test_onnx_stacks_the_directions_forward_first_with_gates_reordered():
    import onnx
    from nnc.onnx import export as E
    program = program_of("input x: [5, 3]\nlstm(2, bidirectional=true, layers=2)")
    w = Graph(program.model).init_weights(0)
    for sfx, base in (("_l1", 10.0), ("_l1_reverse", 20.0)):
        w[f"lstm_1.weight_ih{sfx}"] = (base + np.repeat(np.arange(4, dtype=np.float32), 2))[:, None] * np.ones(
            (1, 4), np.float32)
    exp = E.build(program, w)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in exp.proto.graph.initializer}
    assert {"lstm_1.W_l0", "lstm_1.R_l0", "lstm_1.B_l0", "lstm_1.W_l1", "lstm_1.R_l1", "lstm_1.B_l1"} <= set(inits)
    assert inits["lstm_1.W_l0"].shape == (2, 8, 3) and inits["lstm_1.W_l1"].shape == (2, 8, 4)
    assert inits["lstm_1.R_l1"].shape == (2, 8, 2) and inits["lstm_1.B_l1"].shape == (2, 16)
    # direction 0 forward, 1 backward; PyTorch (i, f, g, o) -> ONNX (i, o, f, c)
    assert list(inits["lstm_1.W_l1"][0, ::2, 0]) == [10, 13, 11, 12]
    assert list(inits["lstm_1.W_l1"][1, ::2, 0]) == [20, 23, 21, 22]
    lstms = [n for n in exp.proto.graph.node if n.op_type == "LSTM"]
    assert len(lstms) == 2
    for n in lstms:
        attrs = {a.name: a for a in n.attribute}
        assert attrs["direction"].s == b"bidirectional" and attrs["hidden_size"].i == 2


@pytest.mark.parametrize("opset", [11, 13, None])
def test_onnx_bidirectional_stacks_at_old_and_new_opsets(opset):
    from test_onnx_export import roundtrip
    body = ("input x: [6, 3]\n"
            "a = rnn(3, bidirectional=true, layers=2, activation=relu, return_sequences=true)\n"
            "b = a -> gru(2, bidirectional=true, layers=2, dropout=0.5)\n"
            "c = x -> lstm(2, layers=3, bidirectional=true, return_sequences=true)\n"
            "output b, c")
    exp, worst = roundtrip(program_of(body), opset=opset, batches=(1, 4))
    assert worst <= 1e-4


# ----------------------------------------------------------------------------------------------
# end to end: a bidirectional 2-layer LSTM checked, trained, exported, its weights round-tripped

SPEC = """\
# Which half of the sequence has the larger sum of its first feature? Needs the whole sequence.
model halves {
    input seq: [12, 2]

    h = lstm(8, bidirectional=true, layers=2, dropout=0.1)
    dense(2) -> softmax

    assert shape(h) == [16]
    assert params == 2_466             # lstm 2*4*(8*2 + 8*8 + 16) + 2*4*(8*16 + 8*8 + 16); dense 34
}

train {
    data      = npz("halves.npz")
    loss      = cross_entropy
    optimizer = adam(lr=0.01)
    epochs    = 4
    batch_size = 32
    seed      = 0
}
"""


def _halves(n=320, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 12, 2)).astype(np.float32)
    y = (x[:, :6, 0].sum(1) > x[:, 6:, 0].sum(1)).astype(np.int64)
    return x, y


def test_bidirectional_two_layer_lstm_end_to_end(tmp_path, capsys):
    spec = tmp_path / "halves.nnspec"
    mod = torch.nn.LSTM(2, 8, num_layers=2, bidirectional=True)
    assert sum(p.numel() for p in mod.parameters()) + 16 * 2 + 2 == 2_466    # the spec's assertion
    spec.write_text(SPEC)
    x, y = _halves()
    np.savez(tmp_path / "halves.npz", x=x, y=y)

    assert main(["check", str(spec)]) == 0
    capsys.readouterr()

    # nnc train: a run directory with weights under the contract's names and a verified model.onnx
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    with np.load(out / "weights.npz") as z:
        keys = set(z.files)
    assert {f"lstm_1.{n}_l{k}{d}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            for k in (0, 1) for d in ("", "_reverse")} <= keys
    assert (out / "model.onnx").is_file(), err

    # nnc.api: fit, the loss falls, export verified, weights saved and loaded back
    model = nnc.load(spec)
    history = model.fit(x, y, epochs=4)
    losses = [row["loss"] for row in history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    report = model.export(tmp_path / "halves.onnx")
    assert "verified" in report
    model.save_weights(tmp_path / "w.npz")
    fresh = nnc.load(spec)
    fresh.load_weights(tmp_path / "w.npz")
    assert list(fresh.weights) == list(model.weights)
    for k in model.weights:
        np.testing.assert_array_equal(fresh.weights[k], model.weights[k])
    np.testing.assert_array_equal(fresh.predict(x[:50]), model.predict(x[:50]))
    # the trained run's weights load into torch's module by name, and it predicts the same
    with np.load(out / "weights.npz") as z:
        run = {k: z[k] for k in z.files}
    trained = nnc.load(spec)
    trained.load_weights(out / "weights.npz")
    mod.load_state_dict({k.split(".", 1)[1]: torch.tensor(v) for k, v in run.items() if k.startswith("lstm_1.")},
                        strict=True)
    mod.eval()
    lstm_y = trained.graph.forward({"seq": x[:20]}, trained.weights)
    with torch.no_grad():
        _, (h_n, _) = mod(torch.tensor(x[:20]).transpose(0, 1))          # time-major module
    feats = torch.cat([h_n[-2], h_n[-1]], dim=-1).numpy()
    logits = feats @ run["dense_1.weight"].T + run["dense_1.bias"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(lstm_y[trained.program.model.outputs[0].name], probs, rtol=1e-4, atol=1e-5)


def test_weights_file_with_a_missing_new_name_is_an_error(tmp_path):
    program = program_of("input x: [6, 3]\ngru(4, bidirectional=true)")
    model = nnc.Model(program)
    w = dict(model.weights)
    del w["gru_1.bias_hh_l0_reverse"]
    np.savez(tmp_path / "w.npz", **w)
    with pytest.raises(NncError) as info:
        model.load_weights(tmp_path / "w.npz")
    assert "gru_1.bias_hh_l0_reverse" in str(info.value)
