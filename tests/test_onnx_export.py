"""ONNX export (docs/language.md section 7): every op and its variants, every example spec, every
supported opset, dynamic batch, name clashes, metadata and the errors E750-E754 / E801-E804.

Each case compiles a tiny spec, exports it with non-trivial weights (random biases and batchnorm
statistics), runs ``onnx.checker`` (full check) and strict shape inference against the IR's shapes,
then compares onnxruntime AND ``onnx.reference.ReferenceEvaluator`` (an independent implementation
of the ONNX spec) with the NumPy runtime at batch sizes 1 and 7: float32, atol=1e-5, rtol=1e-4,
shapes and dtypes exact.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops.op_rnn import RNN_14

from nnc.onnx import export as E
from nnc.onnx import verify as V
from nnc.errors import NncError
from nnc.compiler.lower import compile_source
from nnc.onnx.emitters import EMITTERS, MIN_OPSET
from nnc.compiler.ops import OPS
from nnc.runtime.graph import Graph

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nnspec"))
BATCHES = (1, 7)


class RNN(RNN_14):
    """The reference RNN knows only Tanh and Affine activations: add Relu (nothing else changes)."""

    op_domain = ""

    def choose_act(self, name, alpha, beta):
        if name in ("Relu", "relu"):
            return lambda x: np.maximum(x, 0)
        return super().choose_act(name, alpha, beta)


def program_of(body: str, name: str = "m"):
    return compile_source(f"model {name} {{\n{body}\n}}\n", f"{name}.nnspec")


def lively_weights(program, seed: int = 1) -> dict[str, np.ndarray]:
    """The seeded initial weights with random biases, norm scales and running statistics, so that
    every parameter of the export is exercised (initial biases are all zero)."""
    rng = np.random.default_rng(seed)
    w = Graph(program.model).init_weights(program.seed)
    for key, arr in w.items():
        param = key.rsplit(".", 1)[1]
        if param in ("bias", "running_mean") or param.startswith(("bias_ih", "bias_hh")):
            w[key] = (0.5 * rng.standard_normal(arr.shape)).astype(np.float32)
        elif param == "running_var":
            w[key] = rng.uniform(0.5, 2.0, arr.shape).astype(np.float32)
        elif param == "weight" and key.split(".")[0].startswith(("batchnorm", "layernorm")):
            w[key] = rng.uniform(0.5, 1.5, arr.shape).astype(np.float32)
    return w


def session(proto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def roundtrip(program, *, weights=None, opset=None, batches=BATCHES, reference=True) -> tuple[E.Export, float]:
    """Export, check and compare with both runtimes; returns the export and the largest |diff|."""
    exp = E.build(program, weights if weights is not None else lively_weights(program), opset)
    onnx.checker.check_model(exp.proto, full_check=True)
    V.check_shapes(exp, program.model)
    sess = session(exp.proto)
    ref = ReferenceEvaluator(exp.proto, new_ops=[RNN]) if reference else None
    names = [o.name for o in program.model.outputs]
    assert [o.name for o in sess.get_outputs()] == names
    worst = 0.0
    for batch in batches:
        inputs = V.random_inputs(program.model, batch, seed=batch)
        want = V.reference_outputs(program, exp.weights, inputs)
        got = dict(zip(names, sess.run(names, inputs)))
        for n in names:
            worst = max(worst, V.compare(n, got[n], want[n], "onnxruntime"))
        if ref is not None:
            got = dict(zip(names, ref.run(names, inputs)))
            for n in names:
                worst = max(worst, V.compare(n, np.asarray(got[n]), want[n], "ReferenceEvaluator"))
    return exp, worst


def op_types(exp) -> list[str]:
    return [n.op_type for n in exp.proto.graph.node]


# ----------------------------------------------------------------------------------------------
# every op and its variants

IMG = "input x: [2, 7, 6]\n"
CASES = {
    # dense: Gemm on [F], MatMul + Add on [T, F]
    "dense_rank1": "input x: [5]\ndense(4)",
    "dense_rank1_no_bias": "input x: [5]\ndense(4, bias=false)",
    "dense_rank2": "input x: [3, 5]\ndense(4)",
    "dense_rank2_no_bias": "input x: [3, 5]\ndense(4, bias=false)",
    # convolutions
    "conv2d_valid": IMG + "conv2d(3, 3)",
    "conv2d_same": IMG + "conv2d(3, 3, padding=same)",
    "conv2d_same_stride2_asymmetric": "input x: [2, 8, 7]\nconv2d(3, [3, 4], stride=2, padding=same)",
    "conv2d_same_dilation": IMG + "conv2d(3, 3, padding=same, dilation=2)",
    "conv2d_explicit_padding": IMG + "conv2d(3, 3, padding=[2, 1])",
    "conv2d_int_padding_strides": IMG + "conv2d(3, 3, padding=1, stride=[2, 1])",
    "conv2d_dilation": IMG + "conv2d(2, 2, dilation=[2, 3])",
    "conv2d_no_bias_rect_kernel": IMG + "conv2d(4, [3, 2], bias=false, stride=[1, 2])",
    "conv1d_valid": "input x: [3, 10]\nconv1d(4, 3)",
    "conv1d_same_stride2": "input x: [3, 10]\nconv1d(4, 4, stride=2, padding=same)",
    "conv1d_explicit_padding": "input x: [3, 10]\nconv1d(2, 5, padding=2)",
    "conv1d_dilation_no_bias": "input x: [3, 10]\nconv1d(2, 3, dilation=3, bias=false)",
    "conv2d_groups": "input x: [4, 7, 6]\nconv2d(6, 3, groups=2, padding=same)",
    "conv2d_groups_stride2": "input x: [4, 7, 6]\nconv2d(2, [3, 2], groups=2, stride=2, dilation=[1, 2])",
    "conv2d_depthwise": "input x: [4, 7, 6]\nconv2d(4, 3, groups=4, padding=1)",
    "conv2d_depthwise_multiplier": "input x: [3, 7, 6]\nconv2d(6, 3, groups=3, stride=[2, 1], bias=false)",
    "conv1d_groups": "input x: [6, 10]\nconv1d(4, 3, groups=2, dilation=2)",
    "conv1d_depthwise": "input x: [3, 10]\nconv1d(3, 5, groups=3, padding=same)",
    # conv2d_transpose (grouped ones with a bias: tests/test_ops_conv.py, onnx.reference mis-slices them)
    "conv2d_transpose": "input x: [3, 4, 5]\nconv2d_transpose(2, 3)",
    "conv2d_transpose_stride2": "input x: [3, 4, 5]\nconv2d_transpose(4, 2, stride=2)",
    "conv2d_transpose_pads_output_padding": "input x: [2, 4, 5]\n"
    "conv2d_transpose(3, [3, 4], stride=[2, 3], padding=[1, 2], output_padding=[1, 2])",
    "conv2d_transpose_dilation_no_bias": "input x: [2, 4, 5]\nconv2d_transpose(3, 3, dilation=[2, 1], bias=false)",
    # output_padding at least the stride (below the dilation): pads and output_padding rewritten
    "conv2d_transpose_output_padding_pads": "input x: [2, 4, 5]\n"
    "conv2d_transpose(2, 3, padding=1, output_padding=1, dilation=2)",
    "conv2d_transpose_output_padding_pad_op": "input x: [2, 4, 5]\n"
    "conv2d_transpose(2, 3, stride=[2, 1], padding=[0, 1], output_padding=[1, 2], dilation=[1, 3])",
    "conv2d_transpose_depthwise_no_bias": "input x: [3, 4, 5]\n"
    "conv2d_transpose(3, 3, stride=2, padding=1, output_padding=1, groups=3, bias=false)",
    # upsampling (every opset: tests/test_ops_conv.py)
    "upsample2d_nearest": "input x: [2, 3, 4]\nupsample2d(2)",
    "upsample2d_nearest_unequal": "input x: [2, 3, 4]\nupsample2d([3, 2], mode=nearest)",
    "upsample2d_bilinear": "input x: [2, 3, 4]\nupsample2d(2, mode=bilinear)",
    "upsample2d_bilinear_unequal": "input x: [2, 3, 4]\nupsample2d([1, 3], mode=bilinear)",
    # pools
    "maxpool2d": "input x: [2, 6, 6]\nmaxpool2d(2)",
    "maxpool2d_padding_stride": "input x: [2, 7, 7]\nmaxpool2d(3, stride=2, padding=1)",
    "maxpool2d_rect": IMG + "maxpool2d([3, 2], stride=[1, 2], padding=[1, 0])",
    "maxpool2d_overlap": IMG + "maxpool2d(2, stride=1)",
    "avgpool2d": "input x: [2, 6, 6]\navgpool2d(2)",
    "avgpool2d_padding_stride": "input x: [2, 7, 7]\navgpool2d(3, stride=2, padding=1)",
    "avgpool2d_rect": IMG + "avgpool2d([3, 2], stride=[1, 2], padding=[1, 1])",
    "avgpool2d_overlap": IMG + "avgpool2d(3, stride=1)",
    "globalavgpool2d": IMG + "globalavgpool2d",
    # pooling, reductions and axis ops (issue 10)
    "maxpool2d_ceil": "input x: [2, 5, 7]\nmaxpool2d(2, ceil_mode=true)",
    "maxpool2d_ceil_rect_padding": "input x: [2, 8, 7]\nmaxpool2d([3, 2], stride=[2, 3], padding=1, ceil_mode=true)",
    "maxpool2d_ceil_overhang2": "input x: [1, 9, 9]\nmaxpool2d(4, stride=3, padding=1, ceil_mode=true)",
    "maxpool2d_ceil_drops_last": "input x: [1, 4, 6]\nmaxpool2d(2, stride=3, padding=1, ceil_mode=true)",
    "maxpool2d_ceil_no_effect": "input x: [2, 6, 6]\nmaxpool2d(2, ceil_mode=true)",
    "avgpool2d_ceil": "input x: [2, 5, 7]\navgpool2d(2, ceil_mode=true)",
    "avgpool2d_ceil_rect_padding": "input x: [2, 8, 7]\navgpool2d([3, 2], stride=[2, 3], padding=1, ceil_mode=true)",
    "avgpool2d_ceil_overhang2": "input x: [1, 9, 9]\navgpool2d(4, stride=3, padding=1, ceil_mode=true)",
    "avgpool2d_ceil_drops_last": "input x: [1, 4, 6]\navgpool2d(2, stride=3, padding=1, ceil_mode=true)",
    "avgpool2d_ceil_overlap": "input x: [2, 6, 6]\navgpool2d(3, stride=2, padding=1, ceil_mode=true)",
    "maxpool1d": "input x: [3, 10]\nmaxpool1d(2)",
    "maxpool1d_overlap_padding": "input x: [3, 10]\nmaxpool1d(3, stride=1, padding=1)",
    "maxpool1d_ceil_padding": "input x: [2, 9]\nmaxpool1d(4, stride=3, padding=1, ceil_mode=true)",
    "maxpool1d_ceil_drops_last": "input x: [2, 4]\nmaxpool1d(2, stride=3, padding=1, ceil_mode=true)",
    "maxpool1d_ceil_window_past_input": "input x: [2, 3]\nmaxpool1d(4, stride=2, ceil_mode=true)",
    "avgpool1d": "input x: [3, 10]\navgpool1d(2)",
    "avgpool1d_overlap_padding": "input x: [3, 10]\navgpool1d(3, stride=1, padding=1)",
    "avgpool1d_ceil_padding": "input x: [2, 9]\navgpool1d(4, stride=3, padding=1, ceil_mode=true)",
    "avgpool1d_ceil_drops_last": "input x: [2, 4]\navgpool1d(2, stride=3, padding=1, ceil_mode=true)",
    "avgpool1d_ceil_no_padding": "input x: [2, 9]\navgpool1d(2, ceil_mode=true)",
    "avgpool1d_ceil_window_past_input": "input x: [2, 3]\navgpool1d(4, stride=2, ceil_mode=true)",
    "globalmaxpool2d": IMG + "globalmaxpool2d",
    "globalmaxpool1d": "input x: [3, 10]\nglobalmaxpool1d",
    "globalavgpool1d": "input x: [3, 10]\nglobalavgpool1d",
    "mean_axis0": "input x: [3, 4]\nmean(0)",
    "mean_axis_negative_rank3": IMG + "mean(-1)",
    "max_axis0": "input x: [3, 4]\nmax(0)",
    "max_axis1_rank3": IMG + "max(1)",
    "sum_axis_negative": "input x: [3, 4]\nsum(-1)",
    "sum_axis0_rank3": IMG + "sum(0)",
    "transpose": "input x: [3, 4]\ntranspose([1, 0])",
    "transpose_rank3": IMG + "transpose([2, 0, 1])",
    "transpose_identity": "input x: [3, 4]\ntranspose([0, 1])",
    "select_last": "input x: [5, 3]\nselect(0, -1)",
    "select_rank3": IMG + "select(1, 2)",
    "slice": "input x: [5, 3]\nslice(0, 1, 4)",
    "slice_negative_clamped": IMG + "slice(-1, -4, 100)",
    "slice_whole_axis": "input x: [5, 3]\nslice(1, 0, 3)",
    "token_ids_through_transpose_select_slice": "input t: int64 [2, 8]\ntranspose([1, 0]) -> select(1, 0) "
                                                "-> slice(0, 1, -1) -> embedding(13, 4)",
    # shapes
    "flatten": "input x: [2, 3, 4]\nflatten",
    "flatten_rank1": "input x: [5]\nflatten",
    "reshape": "input x: [12]\nreshape([3, -1])",
    "reshape_image": "input x: [2, 3, 4]\nreshape([4, 6])",
    "reshape_same_shape": "input x: [3, 4]\nreshape([3, 4])",
    "dropout": "input x: [5]\ndense(3) -> dropout(0.5)",
    "dropout_mid": "input x: [5]\ndense(3) -> dropout(0.5) -> relu",
    "identity": "input x: [5]\nidentity",
    "linear": "input x: [5]\ndense(3) -> linear",
    # normalisation
    "batchnorm_features": "input x: [5]\nbatchnorm",
    "batchnorm_sequence": "input x: [3, 5]\nbatchnorm(eps=0.001)",
    "batchnorm_image": "input x: [3, 4, 4]\nbatchnorm(momentum=0.8)",
    # batchnorm folded into the layer it reads (tests/test_onnx_fusions.py: against the unfolded graph)
    "conv2d_batchnorm": IMG + "conv2d(3, 3, padding=1) -> batchnorm",
    "conv2d_no_bias_batchnorm_relu": IMG + "conv2d(3, 3, bias=false) -> batchnorm -> relu",
    "conv2d_depthwise_batchnorm": "input x: [4, 7, 6]\nconv2d(4, 3, groups=4, padding=1, bias=false) -> batchnorm",
    "conv1d_batchnorm": "input x: [3, 10]\nconv1d(4, 3, stride=2) -> batchnorm(eps=0.001)",
    "dense_batchnorm": "input x: [5]\ndense(4) -> batchnorm",
    # ... and not folded: dense on a sequence (the batchnorm's channels are the steps), a layer
    # whose result is read twice or is an output
    "dense_sequence_batchnorm": "input x: [3, 5]\ndense(4) -> batchnorm",
    "conv2d_read_twice_batchnorm": IMG + "c = conv2d(2, 3, padding=1)\nb = c -> batchnorm\nadd(b, c)",
    "conv2d_output_batchnorm": IMG + "c = conv2d(2, 3)\nb = c -> batchnorm\noutput c, b",
    "layernorm_features": "input x: [5]\nlayernorm",
    "layernorm_sequence": "input x: [3, 5]\nlayernorm(eps=0.001)",
    "layernorm_image": "input x: [2, 3, 4]\nlayernorm",
    # embedding and recurrent layers
    "embedding": "input t: int64 [6]\nembedding(11, 4)",
    "embedding_gru": "input t: int64 [6]\nembedding(9, 4) -> gru(3)",
    "rnn_tanh": "input x: [5, 3]\nrnn(4)",
    "rnn_relu": "input x: [5, 3]\nrnn(4, activation=relu)",
    "rnn_tanh_sequences": "input x: [5, 3]\nrnn(4, return_sequences=true)",
    "rnn_relu_sequences": "input x: [5, 3]\nrnn(4, return_sequences=true, activation=relu)",
    "lstm": "input x: [5, 3]\nlstm(4)",
    "lstm_sequences": "input x: [5, 3]\nlstm(4, return_sequences=true)",
    "gru": "input x: [5, 3]\ngru(4)",
    "gru_sequences": "input x: [5, 3]\ngru(4, return_sequences=true)",
    "stacked_lstm_gru": "input x: [5, 3]\nlstm(4, return_sequences=true) -> gru(2, return_sequences=true)",
    # bidirectional and stacked: one node per layer, direction="bidirectional"
    "rnn_tanh_bidirectional": "input x: [5, 3]\nrnn(4, bidirectional=true)",
    "rnn_relu_bidirectional_sequences": "input x: [5, 3]\nrnn(4, bidirectional=true, return_sequences=true, activation=relu)",
    "rnn_relu_layers3": "input x: [5, 3]\nrnn(3, layers=3, activation=relu)",
    "rnn_tanh_bidirectional_layers2_sequences": "input x: [5, 3]\nrnn(3, bidirectional=true, layers=2, return_sequences=true)",
    "lstm_bidirectional": "input x: [5, 3]\nlstm(4, bidirectional=true)",
    "lstm_bidirectional_sequences": "input x: [5, 3]\nlstm(4, bidirectional=true, return_sequences=true)",
    "lstm_layers2": "input x: [5, 3]\nlstm(4, layers=2)",
    "lstm_layers2_sequences_dropout": "input x: [5, 3]\nlstm(4, layers=2, dropout=0.3, return_sequences=true)",
    "lstm_bidirectional_layers2": "input x: [5, 3]\nlstm(4, bidirectional=true, layers=2, dropout=0.2)",
    "lstm_bidirectional_layers2_sequences": "input x: [5, 3]\nlstm(4, bidirectional=true, layers=2, return_sequences=true)",
    "gru_bidirectional": "input x: [5, 3]\ngru(4, bidirectional=true)",
    "gru_bidirectional_sequences": "input x: [5, 3]\ngru(4, bidirectional=true, return_sequences=true)",
    "gru_layers2_sequences": "input x: [5, 3]\ngru(3, layers=2, return_sequences=true)",
    "gru_bidirectional_layers3": "input x: [5, 3]\ngru(3, bidirectional=true, layers=3)",
    "embedding_bigru_dense": "input t: int64 [6]\nembedding(9, 4) -> gru(3, bidirectional=true, return_sequences=true) -> dense(2)",
    # merges
    "add2": "input x: [5]\na = dense(4)\nb = x -> dense(4)\nadd(a, b)",
    "add3": "input x: [5]\na = dense(4)\nb = x -> dense(4)\nc = x -> dense(4)\nadd(a, b, c) -> relu",
    "multiply2": "input x: [5]\na = dense(4)\nb = x -> dense(4)\nmultiply(a, b)",
    "multiply3": "input x: [5]\na = dense(4)\nb = x -> dense(4)\nc = x -> dense(4)\nmultiply(a, b, c)",
    "add_layernorm": "input x: [3, 4]\na = dense(4)\nadd(x, a) -> layernorm",
    "add_layernorm_and_relu": "input x: [3, 4]\na = dense(4)\nh = add(x, a)\nl = h -> layernorm\nr = h -> relu\n"
    "output l, r",
    "add_broadcast_C11": "input x: [3, 4, 5]\ns = globalavgpool2d -> reshape([3, 1, 1])\nadd(x, s)",
    "add_broadcast_rank1": "input x: [3, 4, 5]\ninput b: [5]\nadd(x, b)",
    "add_broadcast_both": "input a: [1, 4]\ninput b: [3, 1]\nadd(a, b)",
    "add_broadcast_3": "input a: [3, 4]\ninput b: [4]\ninput c: [3, 1]\nadd(a, b, c)",
    "multiply_broadcast_C11": "input x: [3, 4, 5]\ns = globalavgpool2d -> dense(3) -> sigmoid -> reshape([3, 1, 1])\n"
                              "multiply(x, s)",
    "multiply_broadcast_rank2": "input x: [3, 4, 5]\ninput g: [4, 1]\nmultiply(x, g)",
    "multiply_broadcast_3": "input a: [2, 1, 4]\ninput b: [3, 1]\ninput c: [4]\nmultiply(a, b, c)",
    "concat_rank1": "input x: [5]\na = dense(4)\nb = x -> dense(3)\nconcat(a, b)",
    "concat_axis0": "input x: [2, 3]\na = relu\nb = x -> tanh\nconcat(a, b, axis=0)",
    "concat_axis1": "input x: [2, 3]\na = relu\nb = x -> tanh\nconcat(a, b, x, axis=1)",
    "concat_axis_negative": "input x: [2, 3]\na = relu\nb = x -> tanh\nconcat(a, b, axis=-1)",
    "concat_two_inputs": "input a: [2, 3]\ninput b: [4, 3]\nconcat(a, b, axis=0)",
    # activations
    "relu": "input x: [3, 4]\nrelu",
    "sigmoid": "input x: [3, 4]\nsigmoid",
    "tanh": "input x: [3, 4]\ntanh",
    "softmax": "input x: [3, 4]\nsoftmax",
    "softmax_axis0": "input x: [3, 4]\nsoftmax(axis=0)",
    "log_softmax": "input x: [3, 4]\nlog_softmax",
    "log_softmax_axis0": "input x: [3, 4]\nlog_softmax(axis=0)",
    "softmax_rank1": "input x: [5]\ndense(4) -> softmax",
    "leaky_relu": "input x: [3, 4]\nleaky_relu",
    "leaky_relu_alpha": "input x: [3, 4]\nleaky_relu(alpha=0.2)",
    "elu": "input x: [3, 4]\nelu",
    "elu_alpha": "input x: [3, 4]\nelu(alpha=0.5)",
    "selu": "input x: [3, 4]\nselu",
    "gelu": "input x: [3, 4]\ngelu",
    "softplus": "input x: [3, 4]\nsoftplus",
    "silu": "input x: [3, 4]\nsilu",
    "step": "input x: [3, 4]\nstep",
    "linear_activation": "input x: [3, 4]\nlinear",
    "relu6": "input x: [3, 4]\nrelu6",
    "hardsigmoid": "input x: [3, 4]\nhardsigmoid",
    "hardswish": "input x: [3, 4]\nhardswish",
    "clip": "input x: [3, 4]\nclip(-0.5, 0.75)",
    "clip_keywords": "input x: [3, 4]\nclip(max=0.5, min=-1)",
    # attention, positional encodings, normalize
    "multihead_attention": "input x: [5, 8]\nmultihead_attention(2)",
    "multihead_attention_causal": "input x: [5, 8]\nmultihead_attention(4, causal=true)",
    "multihead_attention_no_bias": "input x: [4, 6]\nmultihead_attention(3, bias=false)",
    "multihead_attention_dropout": "input x: [4, 6]\nmultihead_attention(1, dropout=0.3)",
    "multihead_attention_cross": "input q: [3, 6]\ninput kv: [5, 6]\nmultihead_attention(q, kv, heads=3)",
    "multihead_attention_cross_no_bias": "input q: [3, 4]\ninput kv: [2, 4]\nmultihead_attention(q, kv, heads=2, bias=false)",
    "positional_embedding": "input x: [5, 4]\npositional_embedding",
    "positional_encoding": "input x: [6, 8]\npositional_encoding",
    "positional_encoding_odd": "input x: [6, 5]\npositional_encoding",
    "normalize": "input x: [3, 4]\nnormalize",
    "normalize_axis0": "input x: [3, 4, 5]\nnormalize(axis=0, eps=0.001)",
    "normalize_axis_middle": "input x: [3, 4, 5]\nnormalize(axis=-2)",
}


# cases onnx.reference gets wrong (onnxruntime is still compared); tests/test_ops_pool.py checks
# that each is still wrong there, so this list shrinks when onnx fixes them
REFERENCE_BUGS = {
    "maxpool1d_overlap_padding": "onnx.reference's MaxPool with every stride 1 ignores 1-D pads",
}


@pytest.mark.parametrize("case", list(CASES))
def test_op_parity(case):
    program = program_of(CASES[case])
    exp, worst = roundtrip(program, reference=case not in REFERENCE_BUGS)
    assert worst <= 1e-4
    # node names carry the IR node ids: "<id>" or "<id>/<OpType>"
    ids = {n.id for n in program.model.nodes}
    for node in exp.proto.graph.node:
        assert node.name.split("/")[0] in ids, node.name


def test_every_catalogue_op_is_covered_by_a_case():
    covered = {n.op for body in CASES.values() for n in program_of(body).model.nodes}
    assert covered == set(OPS)
    assert set(EMITTERS) == set(OPS)


@pytest.mark.parametrize("case, expected", [
    ("dense_rank1", ["Gemm"]),
    ("dense_rank2", ["MatMul", "Add"]),
    ("dense_rank2_no_bias", ["MatMul"]),
    ("conv2d_same_stride2_asymmetric", ["Conv"]),
    ("conv2d_depthwise", ["Conv"]),
    ("conv2d_transpose_pads_output_padding", ["ConvTranspose"]),
    ("conv2d_transpose_output_padding_pads", ["ConvTranspose"]),
    ("conv2d_transpose_output_padding_pad_op", ["ConvTranspose", "Pad", "Add"]),
    ("upsample2d_nearest", ["Resize"]),
    ("upsample2d_bilinear", ["Resize"]),
    ("maxpool2d", ["MaxPool"]),
    ("globalavgpool2d", ["ReduceMean"]),
    ("flatten", ["Flatten"]),
    ("flatten_rank1", ["Identity"]),
    ("reshape", ["Reshape"]),
    ("dropout", ["Gemm", "Identity"]),
    ("dropout_mid", ["Gemm", "Relu"]),
    ("identity", ["Identity"]),
    ("embedding", ["Gather"]),
    ("lstm", ["Transpose", "LSTM", "Squeeze"]),
    ("gru_sequences", ["Transpose", "GRU", "Squeeze", "Transpose"]),
    ("lstm_bidirectional", ["Transpose", "LSTM", "Transpose", "Reshape"]),
    ("lstm_layers2", ["Transpose", "LSTM", "Squeeze", "LSTM", "Squeeze"]),
    ("lstm_bidirectional_layers2_sequences", ["Transpose", "LSTM", "Transpose", "Reshape", "LSTM",
                                              "Transpose", "Reshape"]),
    ("add2", ["Gemm", "Gemm", "Add"]),
    ("add3", ["Gemm", "Gemm", "Gemm", "Sum", "Relu"]),
    ("multiply3", ["Gemm", "Gemm", "Gemm", "Mul", "Mul"]),
    ("silu", ["Sigmoid", "Mul"]),
    ("step", ["Greater", "Cast"]),
    ("linear_activation", ["Identity"]),
    ("relu6", ["Clip"]),
    ("clip", ["Clip"]),
    ("hardsigmoid", ["HardSigmoid"]),
    ("hardswish", ["HardSwish"]),
    ("add_broadcast_C11", ["ReduceMean", "Reshape", "Add"]),
    ("add_broadcast_rank1", ["Reshape", "Add"]),
    ("add_broadcast_both", ["Add"]),
    ("positional_embedding", ["Add"]),
    ("positional_encoding", ["Add"]),
    ("normalize", ["Sub", "Mul"]),
    ("normalize_axis0", ["Sub", "Mul"]),
    ("conv2d_batchnorm", ["Conv"]),
    ("conv2d_no_bias_batchnorm_relu", ["Conv", "Relu"]),
    ("conv2d_depthwise_batchnorm", ["Conv"]),
    ("conv1d_batchnorm", ["Conv"]),
    ("dense_batchnorm", ["Gemm"]),
    ("dense_sequence_batchnorm", ["MatMul", "Add", "BatchNormalization"]),
    ("conv2d_read_twice_batchnorm", ["Conv", "BatchNormalization", "Add"]),
    ("conv2d_output_batchnorm", ["Conv", "BatchNormalization"]),
    ("add_layernorm", ["MatMul", "Add", "Sum", "LayerNormalization"]),
    ("add_layernorm_and_relu", ["MatMul", "Add", "Add", "LayerNormalization", "Relu"]),
])
def test_emitted_nodes(case, expected):
    exp = E.build(program_of(CASES[case]))
    assert op_types(exp) == expected


def test_same_padding_is_asymmetric_like_same_upper():
    exp = E.build(program_of(CASES["conv2d_same_stride2_asymmetric"]))
    (conv,) = exp.proto.graph.node
    pads = next(a.ints for a in conv.attribute if a.name == "pads")
    assert list(pads) == [0, 1, 1, 2]       # [top, left, bottom, right]: odd totals pad the end


def test_gate_blocks_are_reordered_to_onnx_order():
    program = program_of("input x: [5, 3]\nlstm(2)")
    w = lively_weights(program)
    w["lstm_1.weight_ih"] = np.repeat(np.arange(4, dtype=np.float32), 2)[:, None] * np.ones((1, 3), np.float32)
    exp = E.build(program, w)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in exp.proto.graph.initializer}
    # PyTorch (i, f, g, o) = blocks 0, 1, 2, 3 -> ONNX (i, o, f, c) = 0, 3, 1, 2
    assert inits["lstm_1.W"].shape == (1, 8, 3)
    assert list(inits["lstm_1.W"][0, ::2, 0]) == [0, 3, 1, 2]
    gru = program_of("input x: [5, 3]\ngru(2)")
    w = lively_weights(gru)
    w["gru_1.bias_hh"] = np.repeat(np.arange(3, dtype=np.float32), 2)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in E.build(gru, w).proto.graph.initializer}
    # PyTorch (r, z, n) -> ONNX (z, r, h); B = [bias_ih, bias_hh]
    assert list(inits["gru_1.B"][0, 6::2]) == [1, 0, 2]


# ----------------------------------------------------------------------------------------------
# example specs

@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_example_spec_exports_and_verifies(spec, tmp_path):
    program = compile_source(spec.read_text(encoding="utf-8"), str(spec))   # every spec must compile
    out = tmp_path / f"{program.model.name}.onnx"
    report = E.export_onnx(program, out)
    assert report.startswith(f"wrote {out} (opset {E.max_supported_opset()}, ")
    assert "verified: checker, shapes, onnxruntime max |diff|" in report
    assert sorted(os.listdir(tmp_path)) == [out.name]
    # and with trained-looking weights, in both runtimes, at two batch sizes
    _, worst = roundtrip(program)
    assert worst <= 1e-4


def test_dynamic_batch_one_file_many_batch_sizes(tmp_path):
    for spec in ("digits_cnn", "sequence_classifier", "sine_lstm"):
        program = compile_source((ROOT / "specs" / f"{spec}.nnspec").read_text(), f"{spec}.nnspec")
        weights = lively_weights(program)
        out = tmp_path / f"{spec}.onnx"
        E.export_onnx(program, out, weights=weights)
        sess = session(onnx.load(str(out)))
        assert sess.get_inputs()[0].shape[0] == "N"
        for batch in (1, 2, 7, 64):
            inputs = V.random_inputs(program.model, batch, seed=batch)
            want = V.reference_outputs(program, weights, inputs)
            for o, got in zip(program.model.outputs, sess.run(None, inputs)):
                assert got.shape[0] == batch
                V.compare(o.name, got, want[o.name])


# ----------------------------------------------------------------------------------------------
# opsets

FALLBACKS = """
input x: [6, 4]
input img: [2, 4, 4]
h = x -> layernorm -> gelu
s = rnn(5, return_sequences=true, activation=relu)
l = s -> lstm(5, return_sequences=true)
g = l -> gru(3) -> silu
p = img -> globalavgpool2d -> dense(3) -> softmax
q = h -> log_softmax
c = img -> conv2d(3, 3, padding=1, bias=false) -> batchnorm -> relu -> globalmaxpool2d
a = x -> dense(4)
r = add(x, a) -> layernorm
z = img -> normalize(axis=0)
output g, p, q, c, r, z
"""


def test_default_opset_is_the_newest_onnxruntime_supports():
    top = E.max_supported_opset()
    assert MIN_OPSET <= top <= onnx.defs.onnx_opset_version()
    assert list(E.supported_opsets()) == list(range(MIN_OPSET, top + 1))
    exp = E.build(program_of("input x: [3]\nrelu"))
    assert exp.opset == top
    assert [(o.domain, o.version) for o in exp.proto.opset_import] == [("", top)]
    session(exp.proto)   # loads


@pytest.mark.parametrize("opset", list(E.supported_opsets()))
def test_every_supported_opset(opset):
    program = program_of(FALLBACKS)
    exp, worst = roundtrip(program, opset=opset, batches=(1, 3))
    assert exp.opset == opset and exp.proto.opset_import[0].version == opset
    ops = set(op_types(exp))
    assert ("LayerNormalization" in ops) == (opset >= 17)
    assert ("Gelu" in ops) == (opset >= 20)
    assert ("Erf" in ops) == (opset < 20)
    # opset-independent forms: batchnorm folded into the conv, the residual before a layernorm a Sum
    assert "BatchNormalization" not in ops and "Sum" in ops
    assert worst <= 1e-4


def test_softmax_over_a_non_last_axis_needs_opset_13():
    program = program_of("input x: [3, 4]\nsoftmax(axis=0)")
    with pytest.raises(NncError) as err:
        E.build(program, opset=12)
    (d,) = err.value.diagnostics
    assert d.code == "E801"
    assert "softmax_1" in d.message and "needs opset 13" in d.message
    assert "--opset 13" in d.hint
    roundtrip(program, opset=13)
    roundtrip(program_of("input x: [3, 4]\nsoftmax"), opset=MIN_OPSET)   # the last axis is fine


@pytest.mark.parametrize("opset", [1, MIN_OPSET - 1, "max+1", 999])
def test_opset_out_of_range_is_e802(opset, tmp_path):
    if opset == "max+1":
        opset = E.max_supported_opset() + 1
    program = program_of("input x: [3]\nrelu")
    out = tmp_path / "m.onnx"
    with pytest.raises(NncError) as err:
        E.export_onnx(program, out, opset=opset)
    (d,) = err.value.diagnostics
    assert d.code == "E802" and f"opset {opset}" in d.message
    assert str(MIN_OPSET) in d.message and str(E.max_supported_opset()) in d.message
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# the model's names, metadata and layout

def test_names_metadata_and_initializers():
    src = (ROOT / "specs" / "digits_cnn.nnspec").read_text()
    program = compile_source(src, "specs/digits_cnn.nnspec")
    exp = E.build(program)
    m = exp.proto
    assert m.producer_name == "nnc"
    props = {p.key: p.value for p in m.metadata_props}
    import nnc
    assert props["nnc.source"] == src
    assert props["nnc.model"] == "digits_cnn"
    assert props["nnc.version"] == nnc.__version__
    g = m.graph
    assert g.name == "digits_cnn"
    assert [i.name for i in g.input] == ["image"]
    assert [o.name for o in g.output] == ["output"]
    for vi in list(g.input) + list(g.output):
        assert vi.type.tensor_type.shape.dim[0].dim_param == "N"
    inits = {t.name for t in g.initializer}
    assert set(exp.weights) <= inits
    for t in g.initializer:
        assert t.data_location != onnx.TensorProto.EXTERNAL
    assert {n.name for n in g.node} >= {"conv2d_1", "dense_1", "dense_2", "maxpool2d_1", "softmax_1"}
    assert "Dropout" not in op_types(exp)


def test_token_inputs_are_int64():
    exp = E.build(compile_source((ROOT / "specs" / "sequence_classifier.nnspec").read_text()))
    (inp,) = exp.proto.graph.input
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.INT64


@pytest.mark.parametrize("body, outputs", [
    # two outputs from the same node
    ("input x: [4]\nh = dense(3)\ng = h\noutput h, g", ["h", "g"]),
    # an output that IS an input, next to a computed one
    ("input x: [4]\ny = dense(3)\noutput y, x", ["y", "x"]),
    # an output named like another node's id
    ("input x: [4]\nrelu_1 = dense(3)\ny = relu\noutput relu_1, y", ["relu_1", "y"]),
    # an elided op as the output, int64 passing through identity
    ("input t: int64 [4]\nh = identity\noutput h", ["h"]),
    ("input x: [4]\nh = dense(3) -> dropout(0.1)\ng = h -> relu\noutput h, g", ["h", "g"]),
])
def test_name_clashes(body, outputs):
    program = program_of(body)
    exp, _ = roundtrip(program)
    assert [o.name for o in exp.proto.graph.output] == outputs
    assert [i.name for i in exp.proto.graph.input] == [i.name for i in program.model.inputs]


# ----------------------------------------------------------------------------------------------
# errors: nothing half-written is ever left behind

def _save(path, arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("change, code, key", [
    ("missing", "E751", "dense_2.bias"),
    ("extra", "E752", "dense_9.weight"),
    ("shape", "E753", "dense_1.weight"),
])
def test_bad_weights_file(change, code, key, tmp_path):
    program = compile_source((ROOT / "specs" / "xor_mlp.nnspec").read_text())
    w = Graph(program.model).init_weights(0)
    if change == "missing":
        del w[key]
    elif change == "extra":
        w[key] = np.zeros((2, 2), np.float32)
    else:
        w[key] = np.zeros((3, 3), np.float32)
    wpath = _save(tmp_path / "w.npz", w)
    out = tmp_path / "xor.onnx"
    with pytest.raises(NncError) as err:
        E.export_onnx(program, out, weights=wpath)
    assert [d.code for d in err.value.diagnostics] == [code]
    assert key in err.value.diagnostics[0].message
    assert sorted(os.listdir(tmp_path)) == ["w.npz"]
    # the same checks for a dict
    with pytest.raises(NncError) as err:
        E.export_onnx(program, out, weights=w)
    assert [d.code for d in err.value.diagnostics] == [code]


def test_weights_file_round_trip(tmp_path):
    program = compile_source((ROOT / "specs" / "sine_lstm.nnspec").read_text())
    w = lively_weights(program)
    wpath = _save(tmp_path / "w.npz", w)
    out = tmp_path / "sine.onnx"
    E.export_onnx(program, out, weights=str(wpath))
    sess = session(onnx.load(str(out)))
    inputs = V.random_inputs(program.model, 4)
    V.compare("output", sess.run(None, inputs)[0], V.reference_outputs(program, w, inputs)["output"])


def test_missing_weights_file_is_e750(tmp_path):
    program = compile_source((ROOT / "specs" / "xor_mlp.nnspec").read_text())
    with pytest.raises(NncError) as err:
        E.export_onnx(program, tmp_path / "x.onnx", weights=tmp_path / "nope.npz")
    assert err.value.diagnostics[0].code == "E750"
    assert os.listdir(tmp_path) == []


def test_unwritable_paths_are_e804(tmp_path):
    program = compile_source((ROOT / "specs" / "xor_mlp.nnspec").read_text())
    missing_dir = tmp_path / "no" / "such" / "dir" / "m.onnx"
    with pytest.raises(NncError) as err:
        E.export_onnx(program, missing_dir)
    (d,) = err.value.diagnostics
    assert d.code == "E804" and str(missing_dir) in d.message and "mkdir" in d.hint
    a_dir = tmp_path / "folder"
    a_dir.mkdir()
    with pytest.raises(NncError) as err:
        E.export_onnx(program, a_dir)
    assert err.value.diagnostics[0].code == "E804" and "directory" in err.value.diagnostics[0].message
    assert os.listdir(a_dir) == []
    if os.geteuid() != 0:   # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(NncError) as err:
                E.export_onnx(program, ro / "m.onnx")
            assert err.value.diagnostics[0].code == "E804"
            assert os.listdir(ro) == []
        finally:
            ro.chmod(0o700)
    assert sorted(os.listdir(tmp_path)) == ["folder"] + (["ro"] if os.geteuid() != 0 else [])


def test_a_wrong_emitter_fails_verification_and_writes_nothing(tmp_path, monkeypatch):
    program = compile_source((ROOT / "specs" / "iris_mlp.nnspec").read_text())

    def wrong_relu(e):
        return e.op("Sigmoid", [e.x])
    wrong_relu.min_opset = EMITTERS["relu"].min_opset
    monkeypatch.setitem(EMITTERS, "relu", wrong_relu)
    out = tmp_path / "iris.onnx"
    with pytest.raises(NncError) as err:
        E.export_onnx(program, out)
    (d,) = err.value.diagnostics
    assert d.code == "E803"
    assert "output `output`" in d.message and "max |diff|" in d.message and "at [" in d.message
    assert os.listdir(tmp_path) == []
    # --no-verify writes it anyway
    report = E.export_onnx(program, out, verify=False)
    assert report.endswith("not verified") and out.exists()


def test_a_shape_disagreement_fails_verification(tmp_path, monkeypatch):
    program = program_of("input x: [2, 3]\nflatten -> dense(2)")

    def no_flatten(e):
        return e.op("Identity", [e.x])
    no_flatten.min_opset = EMITTERS["flatten"].min_opset
    monkeypatch.setitem(EMITTERS, "flatten", no_flatten)
    with pytest.raises(NncError) as err:
        E.export_onnx(program, tmp_path / "m.onnx")
    assert err.value.diagnostics[0].code == "E803"
    assert os.listdir(tmp_path) == []


def test_compare_reports_the_worst_place():
    want = np.zeros((2, 3), np.float32)
    got = want.copy()
    got[1, 2] = 0.5
    got[0, 0] = 1e-6                       # within tolerance
    with pytest.raises(NncError) as err:
        V.compare("y", got, want)
    assert "max |diff| 0.5 at [1, 2]" in err.value.diagnostics[0].message
    assert V.compare("y", want, want) == 0.0
    with pytest.raises(NncError):
        V.compare("y", got[:1], want)


# ----------------------------------------------------------------------------------------------
# token ids that reach an embedding through ops that pass them on (issue 7)

@pytest.mark.parametrize("body, vocab", [
    ("input tokens: int64[8]\nidentity -> embedding(50, 4) -> flatten -> dense(3)", 50),
    # ids drawn for the default [0, 10) would be out of range for a vocab of 5
    ("input tokens: int64[8]\nidentity -> identity -> embedding(5, 4) -> flatten -> dense(3)", 5),
    # one embedding reads the input directly, a smaller one through identity: the smaller wins
    ("input tokens: int64[8]\na = tokens -> embedding(50, 4) -> flatten\n"
     "b = tokens -> identity -> embedding(3, 4) -> flatten\nconcat(a, b) -> dense(2)", 3),
])
def test_token_ids_through_identity_reach_the_embedding(body, vocab, tmp_path):
    program = program_of(body)
    assert V.token_vocab(program.model, "tokens") == vocab
    ids = V.random_inputs(program.model, 64)["tokens"]
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < vocab
    report = E.export_onnx(program, tmp_path / "t.onnx")
    assert "verified: checker, shapes, onnxruntime" in report
    roundtrip(program)


def test_every_op_that_can_carry_token_ids_passes_them_on():
    """An op with input dtype "any" keeps its source's dtype, so int64 ids flow through it: it must
    pass values on (OpDef.passes_values), or random_inputs must learn what it does to the ids."""
    carriers = {name for name, op in OPS.items() if op.input_dtype == "any"}
    assert carriers and all(OPS[name].passes_values for name in carriers)
    assert V.token_vocab(program_of("input t: int64[3]\nidentity").model, "t") is None
