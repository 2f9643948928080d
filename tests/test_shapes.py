"""Shape inference, parameter counts, FLOPs and layer names, against numbers computed BY HAND.

Every expected number below is worked out in the comment next to it from the rules of the
language reference (docs/language.md), never with nnc code:

- output sizes: conv/pool ``floor((n + pad_begin + pad_end - dilation*(k - 1) - 1) / stride) + 1``;
  ``padding=same`` is SAME_UPPER: ``out = ceil(n / stride)``, total padding
  ``max((out - 1)*stride + dilation*(k - 1) + 1 - n, 0)``, the odd unit at the end;
- parameters: trainable values only (batchnorm's running statistics are state);
- FLOPs per example = 2 x multiply-adds of dense, conv and recurrent layers (biases not counted),
  every other op 0:
  dense ``2 * prod(input) * units``; conv ``2 * prod(output) * C_in * prod(kernel)``;
  rnn/lstm/gru ``2 * T * G * units * (F + units)`` with G = 1 / 4 / 3.

Each case is a table row: a model body and, per layer name, (shape, params, flops), plus the
model totals.
"""
from __future__ import annotations

import pytest

from nnc.errors import NncError
from nnc.compiler.lower import compile_source


def build(body: str, name: str = "m"):
    """Compile ``model <name> { <body> }`` and return its ModelIR."""
    return compile_source(f"model {name} {{\n{body}\n}}\n", "<test>").model


def errors(body: str) -> list[str]:
    """The diagnostic codes of a model body that must not compile."""
    with pytest.raises(NncError) as info:
        build(body)
    return [d.code for d in info.value.diagnostics]


# ----------------------------------------------------------------------------------------------
# the table: (case id, body, {layer: (shape, params, flops)}, (model params, state, flops))

CASES = [
    (
        "lenet5",
        """
        input image: [1, 32, 32]
        conv2d(6, 5) -> relu
        maxpool2d(2)
        conv2d(16, 5) -> relu
        maxpool2d(2)
        flatten
        dense(120) -> relu
        dense(84) -> relu
        dense(10) -> softmax
        """,
        {
            # 32 - 5 + 1 = 28; params 6*1*5*5 + 6 = 156; flops 2 * (6*28*28) * 1 * 25 = 235,200
            "conv2d_1": ([6, 28, 28], 156, 235_200),
            "relu_1": ([6, 28, 28], 0, 0),
            # (28 - 2) // 2 + 1 = 14
            "maxpool2d_1": ([6, 14, 14], 0, 0),
            # 14 - 5 + 1 = 10; params 16*6*25 + 16 = 2,416; flops 2 * (16*10*10) * 6 * 25 = 480,000
            "conv2d_2": ([16, 10, 10], 2_416, 480_000),
            "relu_2": ([16, 10, 10], 0, 0),
            # (10 - 2) // 2 + 1 = 5
            "maxpool2d_2": ([16, 5, 5], 0, 0),
            # 16 * 5 * 5 = 400
            "flatten_1": ([400], 0, 0),
            # 400*120 + 120 = 48,120; flops 2 * 400 * 120 = 96,000
            "dense_1": ([120], 48_120, 96_000),
            "relu_3": ([120], 0, 0),
            # 120*84 + 84 = 10,164; flops 2 * 120 * 84 = 20,160
            "dense_2": ([84], 10_164, 20_160),
            "relu_4": ([84], 0, 0),
            # 84*10 + 10 = 850; flops 2 * 84 * 10 = 1,680
            "dense_3": ([10], 850, 1_680),
            "softmax_1": ([10], 0, 0),
        },
        # params 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706
        # flops 235,200 + 480,000 + 96,000 + 20,160 + 1,680 = 833,040
        (61_706, 0, 833_040),
    ),
    (
        "lstm",
        """
        input seq: [10, 8]
        lstm(64)
        """,
        # 4 * (64*8 + 64*64 + 2*64) = 4 * (512 + 4,096 + 128) = 4 * 4,736 = 18,944
        # flops 2 * T * 4 * units * (F + units) = 2 * 10 * 4 * 64 * (8 + 64) = 368,640
        {"lstm_1": ([64], 18_944, 368_640)},
        (18_944, 0, 368_640),
    ),
    (
        "lstm_sequences",
        """
        input seq: [10, 8]
        lstm(64, return_sequences=true)
        dense(3)
        """,
        {
            "lstm_1": ([10, 64], 18_944, 368_640),       # as above, every step returned
            # per step: 64*3 + 3 = 195 params; flops 2 * (10*64) * 3 = 3,840
            "dense_1": ([10, 3], 195, 3_840),
        },
        # 18,944 + 195 = 19,139; 368,640 + 3,840 = 372,480
        (19_139, 0, 372_480),
    ),
    (
        "gru",
        """
        input seq: [5, 3]
        gru(4, return_sequences=true)
        """,
        # 3 * (4*3 + 4*4 + 2*4) = 3 * (12 + 16 + 8) = 3 * 36 = 108
        # flops 2 * 5 * 3 * 4 * (3 + 4) = 840
        {"gru_1": ([5, 4], 108, 840)},
        (108, 0, 840),
    ),
    (
        "rnn",
        """
        input seq: [6, 2]
        rnn(5, activation=relu)
        """,
        # 1 * (5*2 + 5*5 + 2*5) = 10 + 25 + 10 = 45; flops 2 * 6 * 1 * 5 * (2 + 5) = 420
        {"rnn_1": ([5], 45, 420)},
        (45, 0, 420),
    ),
    (
        "lstm_bidirectional_stacked",
        """
        input seq: [10, 8]
        lstm(16, bidirectional=true, layers=2, dropout=0.1)
        """,
        # D = 2; layer 0: 2 * 4 * (16*8 + 16*16 + 2*16) = 8 * 416 = 3,328
        # layer 1 reads D*units = 32: 2 * 4 * (16*32 + 16*16 + 2*16) = 8 * 800 = 6,400
        # flops 2 * T * D * 4 * units * (F_k + units): 2*10*2*4*16*(8 + 16) = 61,440 and
        # 2*10*2*4*16*(32 + 16) = 122,880
        {"lstm_1": ([32], 9_728, 184_320)},
        (9_728, 0, 184_320),
    ),
    (
        "gru_bidirectional_sequences",
        """
        input seq: [5, 3]
        gru(4, bidirectional=true, return_sequences=true)
        """,
        # twice the single gru above: 2 * 108 = 216 params, 2 * 840 = 1,680 flops; [T, 2*units]
        {"gru_1": ([5, 8], 216, 1_680)},
        (216, 0, 1_680),
    ),
    (
        "rnn_three_layers",
        """
        input seq: [6, 2]
        rnn(5, layers=3, activation=relu)
        """,
        # layer 0 as above: 45 params, 420 flops; layers 1, 2 read 5 features:
        # 5*5 + 5*5 + 2*5 = 60 params, 2 * 6 * 5 * (5 + 5) = 600 flops each
        {"rnn_1": ([5], 165, 1_620)},
        (165, 0, 1_620),
    ),
    (
        "embedding",
        """
        input tokens: int64 [7]
        embedding(100, 16)
        gru(8)
        """,
        {
            # 100 * 16 = 1,600 params; a table lookup: 0 FLOPs
            "embedding_1": ([7, 16], 1_600, 0),
            # 3 * (8*16 + 8*8 + 2*8) = 3 * (128 + 64 + 16) = 3 * 208 = 624
            # flops 2 * 7 * 3 * 8 * (16 + 8) = 8,064
            "gru_1": ([8], 624, 8_064),
        },
        (2_224, 0, 8_064),                                # 1,600 + 624
    ),
    (
        "residual_repeat",
        """
        input x: [10]
        dense(16)
        repeat 2 {
            h = dense(16) -> relu
            r = h -> dense(16)
            add(h, r) -> relu
        }
        """,
        {
            # 10*16 + 16 = 176; flops 2 * 10 * 16 = 320
            "dense_1": ([16], 176, 320),
            # each block dense: 16*16 + 16 = 272; flops 2 * 16 * 16 = 512
            "dense_2": ([16], 272, 512), "relu_1": ([16], 0, 0),
            "dense_3": ([16], 272, 512), "add_1": ([16], 0, 0), "relu_2": ([16], 0, 0),
            "dense_4": ([16], 272, 512), "relu_3": ([16], 0, 0),
            "dense_5": ([16], 272, 512), "add_2": ([16], 0, 0), "relu_4": ([16], 0, 0),
        },
        # 176 + 4 * 272 = 1,264; 320 + 4 * 512 = 2,368
        (1_264, 0, 2_368),
    ),
    (
        "concat_channels",
        """
        input image: [3, 8, 8]
        a = conv2d(4, 3, padding=same)
        b = image -> conv2d(6, 1)
        concat(a, b, axis=0)
        """,
        {
            # same, stride 1: 8x8; 4*3*3*3 + 4 = 112; flops 2 * (4*8*8) * 3 * 9 = 13,824
            "conv2d_1": ([4, 8, 8], 112, 13_824),
            # 1x1: 6*3*1*1 + 6 = 24; flops 2 * (6*8*8) * 3 * 1 = 2,304
            "conv2d_2": ([6, 8, 8], 24, 2_304),
            # channels 4 + 6 = 10
            "concat_1": ([10, 8, 8], 0, 0),
        },
        (136, 0, 16_128),                                 # 112 + 24; 13,824 + 2,304
    ),
    (
        "concat_time_features",
        """
        input seq: [5, 3]
        p = dense(4)
        q = seq -> dense(2)
        concat(p, q, axis=-1)
        """,
        {
            # dense per time step: 3*4 + 4 = 16; flops 2 * (5*3) * 4 = 120
            "dense_1": ([5, 4], 16, 120),
            # 3*2 + 2 = 8; flops 2 * (5*3) * 2 = 60
            "dense_2": ([5, 2], 8, 60),
            # features 4 + 2 = 6
            "concat_1": ([5, 6], 0, 0),
        },
        (24, 0, 180),
    ),
    (
        "concat_rank1_no_axis",
        """
        input a: [4]
        input b: [3]
        x = a -> dense(8)
        y = b -> dense(5)
        concat(x, y)
        """,
        {
            "dense_1": ([8], 40, 64),                     # 4*8 + 8 = 40; 2*4*8 = 64
            "dense_2": ([5], 20, 30),                     # 3*5 + 5 = 20; 2*3*5 = 30
            "concat_1": ([13], 0, 0),                     # 8 + 5
        },
        (60, 0, 94),
    ),
    (
        "batchnorm_layernorm",
        """
        input image: [3, 8, 8]
        conv2d(16, 3, padding=same, bias=false)
        batchnorm
        globalavgpool2d
        layernorm
        dense(4)
        batchnorm
        """,
        {
            # no bias: 16*3*3*3 = 432; flops 2 * (16*8*8) * 3 * 9 = 55,296
            "conv2d_1": ([16, 8, 8], 432, 55_296),
            # weight + bias = 2 * 16 = 32 trainable; running_mean + running_var = 32 state
            "batchnorm_1": ([16, 8, 8], 32, 0),
            "globalavgpool2d_1": ([16], 0, 0),
            # last axis 16: weight + bias = 32
            "layernorm_1": ([16], 32, 0),
            "dense_1": ([4], 68, 128),                    # 16*4 + 4 = 68; 2 * 16 * 4 = 128
            "batchnorm_2": ([4], 8, 0),                   # 2 * 4; state 2 * 4
        },
        # params 432 + 32 + 32 + 68 + 8 = 572; state 32 + 8 = 40; flops 55,296 + 128 = 55,424
        (572, 40, 55_424),
    ),
    (
        "layernorm_sequence",
        """
        input seq: [5, 12]
        layernorm
        """,
        {"layernorm_1": ([5, 12], 24, 0)},                # normalises the last axis: 2 * 12
        (24, 0, 0),
    ),
    (
        "reshape_flatten",
        """
        input x: [64]
        reshape([4, -1])
        reshape([-1, 8, 8])
        flatten
        """,
        {
            "reshape_1": ([4, 16], 0, 0),                 # 64 / 4 = 16
            "reshape_2": ([1, 8, 8], 0, 0),               # 64 / (8*8) = 1
            "flatten_1": ([64], 0, 0),
        },
        (0, 0, 0),
    ),
    (
        "softmax_axis",
        """
        input x: [5, 3]
        softmax(axis=0)
        log_softmax
        leaky_relu(alpha=0.2)
        identity
        """,
        {"softmax_1": ([5, 3], 0, 0), "log_softmax_1": ([5, 3], 0, 0),
         "leaky_relu_1": ([5, 3], 0, 0), "identity_1": ([5, 3], 0, 0)},
        (0, 0, 0),
    ),
    (
        "names",
        """
        input x: [6]
        dense(4, name="encoder") -> relu(name="act")
        dense(3)
        dropout(0.5)
        dense(2, name="head")
        """,
        {
            "encoder": ([4], 28, 48),                     # 6*4 + 4 = 28; 2*6*4 = 48
            "act": ([4], 0, 0),
            # named stages are not counted: the first unnamed dense is dense_1
            "dense_1": ([3], 15, 24),                     # 4*3 + 3 = 15; 2*4*3 = 24
            "dropout_1": ([3], 0, 0),
            "head": ([2], 8, 12),                         # 3*2 + 2 = 8; 2*3*2 = 12
        },
        (51, 0, 84),                                      # 28 + 15 + 8; 48 + 24 + 12
    ),
]


@pytest.mark.parametrize("case_id, body, layers, totals", CASES, ids=[c[0] for c in CASES])
def test_layers(case_id, body, layers, totals):
    model = build(body)
    got = {n.id: (n.shape, n.params, n.flops) for n in model.nodes}
    # every layer, in source order, with no extra nodes
    assert list(got) == list(layers)
    for name, expected in layers.items():
        assert got[name] == expected, name
    assert (model.params, model.state, model.flops) == totals


# ----------------------------------------------------------------------------------------------
# convolution geometry on [3, 32, 32] with 8 filters: params and FLOPs per output position
#   kernel 3: params 8*3*3*3 + 8 = 224; flops 2 * (8*H*W) * 3 * 9 = 432 * H * W

CONV_CASES = [
    # (arguments, output shape, pads [top, left, bottom, right], params, flops)
    # valid: 32 - 3 + 1 = 30; flops 432 * 900 = 388,800
    ("3", [8, 30, 30], [0, 0, 0, 0], 224, 388_800),
    # same, stride 1: total pad (32-1)*1 + 3 - 32 = 2 -> 1 + 1; flops 432 * 1,024 = 442,368
    ("3, padding=same", [8, 32, 32], [1, 1, 1, 1], 224, 442_368),
    # same, stride 2: out ceil(32/2) = 16; total (16-1)*2 + 3 - 32 = 1 -> 0 before, 1 after
    # flops 432 * 256 = 110,592
    ("3, stride=2, padding=same", [8, 16, 16], [0, 0, 1, 1], 224, 110_592),
    # same, stride 2, kernel 4: total (16-1)*2 + 4 - 32 = 2 -> 1 + 1
    # params 8*3*4*4 + 8 = 392; flops 2 * (8*16*16) * 3 * 16 = 196,608
    ("4, stride=2, padding=same", [8, 16, 16], [1, 1, 1, 1], 392, 196_608),
    # valid, stride 2: (32 - 3) // 2 + 1 = 15; flops 432 * 225 = 97,200
    ("3, stride=2", [8, 15, 15], [0, 0, 0, 0], 224, 97_200),
    # explicit 2: 32 + 4 - 3 + 1 = 34; flops 432 * 1,156 = 499,392
    ("3, padding=2", [8, 34, 34], [2, 2, 2, 2], 224, 499_392),
    # [ph, pw] = [1, 0]: H 32 + 2 - 3 + 1 = 32, W 32 - 3 + 1 = 30; flops 432 * 960 = 414,720
    ("3, padding=[1, 0]", [8, 32, 30], [1, 0, 1, 0], 224, 414_720),
    # dilation 2: effective kernel 2*(3-1) + 1 = 5; 32 - 5 + 1 = 28; flops 432 * 784 = 338,688
    ("3, dilation=2", [8, 28, 28], [0, 0, 0, 0], 224, 338_688),
    # dilation 2, same: total (32-1) + 5 - 32 = 4 -> 2 + 2
    ("3, dilation=2, padding=same", [8, 32, 32], [2, 2, 2, 2], 224, 442_368),
    # kernel [3, 5], stride [1, 2]: H 32 - 3 + 1 = 30, W (32 - 5) // 2 + 1 = 14
    # params 8*3*3*5 + 8 = 368; flops 2 * (8*30*14) * 3 * 15 = 302,400
    ("[3, 5], stride=[1, 2]", [8, 30, 14], [0, 0, 0, 0], 368, 302_400),
    # no bias: 8*3*3*3 = 216
    ("3, bias=false", [8, 30, 30], [0, 0, 0, 0], 216, 388_800),
    # a 1x1 convolution: 8*3 + 8 = 32; flops 2 * (8*32*32) * 3 = 49,152
    ("1", [8, 32, 32], [0, 0, 0, 0], 32, 49_152),
]


@pytest.mark.parametrize("args, shape, pads, params, flops", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv2d_geometry(args, shape, pads, params, flops):
    model = build(f"input image: [3, 32, 32]\nconv2d(8, {args})")
    node = model.node("conv2d_1")
    assert (node.shape, node.attrs["pads"], node.params, node.flops) == (shape, pads, params, flops)


def test_conv2d_same_stride2_odd_input():
    # [1, 7, 7], kernel 3, stride 2, same: out ceil(7/2) = 4; total (4-1)*2 + 3 - 7 = 2 -> 1 + 1
    # params 2*1*9 + 2 = 20; flops 2 * (2*4*4) * 1 * 9 = 576
    node = build("input x: [1, 7, 7]\nconv2d(2, 3, stride=2, padding=same)").node("conv2d_1")
    assert (node.shape, node.attrs["pads"], node.params, node.flops) == ([2, 4, 4], [1, 1, 1, 1], 20, 576)


def test_conv2d_same_stride2_dilated():
    # [1, 10, 10], kernel 3, dilation 2, stride 2, same: out ceil(10/2) = 5;
    # total (5-1)*2 + 2*(3-1) + 1 - 10 = 8 + 5 - 10 = 3 -> 1 before, 2 after (SAME_UPPER)
    node = build("input x: [1, 10, 10]\nconv2d(1, 3, stride=2, dilation=2, padding=same)").node("conv2d_1")
    assert (node.shape, node.attrs["pads"]) == ([1, 5, 5], [1, 1, 2, 2])


CONV1D_CASES = [
    # input [4, 50], 8 filters, kernel 5: params 8*4*5 + 8 = 168; flops 2 * (8*L) * 4 * 5 = 320 * L
    # valid stride 2: (50 - 5) // 2 + 1 = 23; flops 320 * 23 = 7,360
    ("5, stride=2", [8, 23], [0, 0], 168, 7_360),
    # same stride 1: 50; total 49 + 5 - 50 = 4 -> 2 + 2; flops 320 * 50 = 16,000
    ("5, padding=same", [8, 50], [2, 2], 168, 16_000),
    # same stride 3: ceil(50/3) = 17; total (17-1)*3 + 5 - 50 = 3 -> 1 + 2; flops 320 * 17 = 5,440
    ("5, stride=3, padding=same", [8, 17], [1, 2], 168, 5_440),
    # explicit 1, dilation 3: effective 3*4 + 1 = 13; 50 + 2 - 13 + 1 = 40; flops 320 * 40 = 12,800
    ("5, padding=1, dilation=3", [8, 40], [1, 1], 168, 12_800),
]


@pytest.mark.parametrize("args, shape, pads, params, flops", CONV1D_CASES, ids=[c[0] for c in CONV1D_CASES])
def test_conv1d_geometry(args, shape, pads, params, flops):
    node = build(f"input sig: [4, 50]\nconv1d(8, {args})").node("conv1d_1")
    assert (node.shape, node.attrs["pads"], node.params, node.flops) == (shape, pads, params, flops)


POOL_CASES = [
    # (input, stage, output shape, attrs stride, attrs pads)
    # stride defaults to size: (9 - 2) // 2 + 1 = 4
    ("[4, 9, 9]", "maxpool2d(2)", [4, 4, 4], [2, 2], [0, 0, 0, 0]),
    # overlapping: (9 - 3) // 2 + 1 = 4
    ("[4, 9, 9]", "maxpool2d(3, stride=2)", [4, 4, 4], [2, 2], [0, 0, 0, 0]),
    # stride 1: 9 - 3 + 1 = 7
    ("[4, 9, 9]", "avgpool2d(3, stride=1)", [4, 7, 7], [1, 1], [0, 0, 0, 0]),
    # padding 1: (8 + 2 - 3) // 2 + 1 = 4
    ("[4, 8, 8]", "avgpool2d(3, stride=2, padding=1)", [4, 4, 4], [2, 2], [1, 1, 1, 1]),
    # rectangular: H (6 - 2) // 1 + 1 = 5, W (7 - 3) // 2 + 1 = 3
    ("[2, 6, 7]", "maxpool2d([2, 3], stride=[1, 2])", [2, 5, 3], [1, 2], [0, 0, 0, 0]),
    # padding [1, 0] with size 2: H (5 + 2 - 2) // 2 + 1 = 3, W (5 - 2) // 2 + 1 = 2
    ("[1, 5, 5]", "maxpool2d(2, padding=[1, 0])", [1, 3, 2], [2, 2], [1, 0, 1, 0]),
]


@pytest.mark.parametrize("inp, stage, shape, stride, pads", POOL_CASES, ids=[c[1] for c in POOL_CASES])
def test_pool_geometry(inp, stage, shape, stride, pads):
    model = build(f"input x: {inp}\n{stage}")
    (node,) = model.nodes
    assert (node.shape, node.attrs["stride"], node.attrs["pads"], node.params, node.flops) == \
        (shape, stride, pads, 0, 0)


def test_globalavgpool2d():
    (node,) = build("input x: [16, 8, 8]\nglobalavgpool2d").nodes
    assert (node.id, node.shape, node.params, node.flops) == ("globalavgpool2d_1", [16], 0, 0)


# ----------------------------------------------------------------------------------------------
# weights (names, layouts, trainable flags) and state

def _weights(node):
    return [(w.name, w.shape, w.trainable) for w in node.weights]


def test_weight_layouts():
    model = build("""
        input image: [3, 8, 8]
        conv2d(4, [3, 2])
        batchnorm
        flatten
        dense(5)
        """)
    # conv weight [filters, C, kh, kw]; H 8 - 3 + 1 = 6, W 8 - 2 + 1 = 7
    assert _weights(model.node("conv2d_1")) == [("weight", [4, 3, 3, 2], True), ("bias", [4], True)]
    assert _weights(model.node("batchnorm_1")) == [
        ("weight", [4], True), ("bias", [4], True),
        ("running_mean", [4], False), ("running_var", [4], False)]
    # flatten: 4 * 6 * 7 = 168; dense weight [units, F]
    assert _weights(model.node("dense_1")) == [("weight", [5, 168], True), ("bias", [5], True)]
    # params: conv 4*3*3*2 + 4 = 76; batchnorm 8; dense 168*5 + 5 = 845 -> 929; state 2 * 4 = 8
    assert (model.params, model.state) == (929, 8)


@pytest.mark.parametrize("op, gates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_recurrent_weight_layouts(op, gates):
    model = build(f"input seq: [7, 3]\n{op}(5)")
    node = model.node(f"{op}_1")
    g = gates * 5  # G * units
    assert _weights(node) == [("weight_ih", [g, 3], True), ("weight_hh", [g, 5], True),
                              ("bias_ih", [g], True), ("bias_hh", [g], True)]
    assert all(w.blocks == gates for w in node.weights)
    # G * (5*3 + 5*5 + 2*5) = G * 50
    assert node.params == gates * 50


def test_recurrent_initialisers():
    lstm = build("input seq: [7, 3]\nlstm(5)").node("lstm_1")
    inits = {w.name: w.init["kind"] for w in lstm.weights}
    assert inits == {"weight_ih": "glorot_uniform", "weight_hh": "orthogonal",
                     "bias_ih": "lstm_forget_bias", "bias_hh": "zeros"}
    gru = build("input seq: [7, 3]\ngru(5, init=he_normal, recurrent_init=glorot_uniform)").node("gru_1")
    inits = {w.name: w.init["kind"] for w in gru.weights}
    assert inits == {"weight_ih": "he_normal", "weight_hh": "glorot_uniform",
                     "bias_ih": "zeros", "bias_hh": "zeros"}


def test_embedding_weights_and_dtypes():
    model = build("input tokens: int64 [7]\nembedding(100, 16)")
    node = model.node("embedding_1")
    assert _weights(node) == [("weight", [100, 16], True)]
    assert node.weights[0].init == {"kind": "uniform", "low": -0.05, "high": 0.05}
    assert model.inputs[0].dtype == "int64" and node.dtype == "float32"


# ----------------------------------------------------------------------------------------------
# dataflow details

def test_repeat_wiring_and_scoping():
    model = build("""
        input x: [10]
        dense(16)
        repeat 2 {
            h = dense(16) -> relu
            r = h -> dense(16)
            add(h, r) -> relu
        }
        """)
    # the first statement of each repetition takes the previous statement's value
    assert model.node("dense_2").inputs == ["dense_1"]
    assert model.node("add_1").inputs == ["relu_1", "dense_3"]
    assert model.node("dense_4").inputs == ["relu_2"]
    assert model.node("add_2").inputs == ["relu_3", "dense_5"]
    assert [o.source for o in model.outputs] == ["relu_4"]


def test_values_bound_in_repeat_are_invisible_after_it():
    assert errors("""
        input x: [4]
        repeat 2 {
            h = dense(4)
        }
        h -> relu
        """) == ["E301"]
    assert errors("""
        input x: [4]
        repeat 2 {
            h = dense(4)
        }
        assert shape(h) == [4]
        """) == ["E303"]


def test_name_inside_repeat_is_used_twice():
    assert "E308" in errors("input x: [4]\nrepeat 2 {\n dense(4, name=\"block\")\n}")


def test_softmax_axis_is_normalised():
    model = build("input x: [5, 3]\nsoftmax\nsoftmax(axis=-2)\nsoftmax(axis=1)")
    assert [n.attrs["axis"] for n in model.nodes] == [1, 0, 1]
    assert "E211" in errors("input x: [5, 3]\nsoftmax(axis=2)")


def test_concat_axis_is_normalised():
    model = build("input x: [2, 4, 4]\na = conv2d(3, 1)\nb = x -> conv2d(5, 1)\nconcat(a, b, axis=-3)")
    node = model.node("concat_1")
    assert (node.shape, node.attrs["axis"]) == ([8, 4, 4], 0)  # 3 + 5 channels


def test_constant_naming_an_op_is_a_stage():
    model = build("let act = relu\ninput x: [3]\ndense(2) -> act")
    assert [n.id for n in model.nodes] == ["dense_1", "relu_1"]


@pytest.mark.parametrize("body, code", [
    ("input x: [16, 4, 4]\ndense(64)", "E201"),                       # needs flatten
    ("input x: [3, 4, 4]\nconv2d(8, 5)", "E206"),                     # 4 < 5
    ("input x: [3, 4, 4]\nconv2d(8, 3, dilation=2)", "E206"),         # effective 5 > 4
    ("input x: [3, 8, 8]\nmaxpool2d(3, padding=2)", "E402"),          # padding > 3 // 2
    ("input x: [60]\nreshape([7, -1])", "E205"),                      # 60 % 7 != 0
    ("input x: [60]\nreshape([7, 8])", "E205"),                       # 56 != 60
    ("input x: [4, 4]\na = dense(2)\nb = x -> dense(3)\nadd(a, b)", "E203"),
    ("input x: [3, 4, 4]\na = conv2d(2, 1)\nb = x -> conv2d(2, 1)\nconcat(a, b)", "E204"),
    ("input a: [4]\ninput b: [3]\ndense(2)", "E306"),                 # which input?
    ("input x: [4]\nembedding(10, 3)", "E207"),                       # float input
    ("input t: int64 [4]\ndense(3)", "E208"),                         # int64 into dense
    ("input x: [4]\nlstm(3)", "E209"),                                # needs [T, F]
])
def test_shape_errors(body, code):
    assert code in errors(body)


def test_assert_quantities():
    model = build("""
        input x: [6]
        h = dense(4)
        dense(2)
        assert params == 38
        assert flops == 64
        assert shape(h) == [4]
        assert output == [2]
        """)
    # params (6*4 + 4) + (4*2 + 2) = 28 + 10 = 38; flops 2*6*4 + 2*4*2 = 48 + 16 = 64
    assert [(a.quantity, a.actual) for a in model.assertions] == [
        ("params", 38), ("flops", 64), ("shape(h)", [4]), ("output", [2])]
    assert errors("input x: [6]\ndense(4)\nassert params < 28") == ["E501"]   # 28 is not < 28
    assert errors("input x: [6]\nh = dense(4)\nassert shape(h) <= [4]") == ["E401"]


def test_assert_inside_repeat_sees_the_block_values():
    model = build("""
        input x: [4]
        repeat 2 {
            h = dense(4)
            assert shape(h) == [4]
        }
        """)
    # one check per repetition, each on that repetition's h: dense 4 -> [4]
    assert [(a.quantity, a.actual) for a in model.assertions] == [("shape(h)", [4])] * 2


def test_a_failed_input_declaration_does_not_cascade():
    # `input x: [0]` is one error (E402); the layer after it must not also say there is no input
    assert errors("input x: [0]\ndense(4)") == ["E402"]


def test_a_name_local_to_repeat_does_not_name_the_output():
    model = build("""
        input x: [4]
        repeat 2 {
            h = dense(4)
        }
    """)
    assert [o.name for o in model.outputs] == ["output"]
