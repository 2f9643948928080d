"""The benchmark models written by hand in PyTorch (no torchvision): the reference side of
``benchmarks/train_speed.py`` and the "hand" loop of ``benchmarks/torch_engine_speed.py``.

Each module's submodules are named as nnc names its layers (``dense_1``, ``conv2d_2``, ...), so the
state_dict keys are nnc's weight keys (the weights contract uses PyTorch's names and layouts);
:func:`load_nnc_weights` copies nnc's initial weights in. Every model returns logits where the
nnc spec ends in ``softmax`` (``nn.CrossEntropyLoss`` applies the softmax itself).

    mlp          784-256-128-10, relu
    wide         784-1024-1024-10, relu
    cnn          conv(16,3,same)-relu-maxpool(2)-conv(32,3,same)-relu-maxpool(2)-flatten-dense(10); (1, 28, 28)
    lstm         lstm(64) over (32 steps, 8 features), the last hidden state -> dense(1)
    gru          the same with gru(64)
    transformer  one post-norm encoder layer on (128, 128): 4-head self-attention, add, layernorm,
                 dense(512)-relu-dense(128), add, layernorm; mean over the steps -> dense(10)
    dwsep        (32, 32, 32): depthwise conv 3x3 (groups 32, no bias)-batchnorm-relu,
                 1x1 conv(64, no bias)-batchnorm-relu, global average pool -> dense(10)
    convt        (32, 8, 8): conv_transpose(32,4,s2,p1)-relu-conv_transpose(16,4,s2,p1)-relu
                 -conv_transpose(1,3,p1) -> (1, 32, 32)
    zoo          specs/zoo/keras_mnist_convnet.nnspec: conv(32,3)-relu-maxpool-conv(64,3)-relu-maxpool
                 -flatten-dropout(0.5)-dense(10)
    tiny         dense(3) on 4 features
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn


def _seq(*layers) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


def mlp(hidden=(256, 128), inputs=784, classes=10) -> nn.Module:
    layers, width = [], inputs
    for i, h in enumerate(hidden, 1):
        layers += [(f"dense_{i}", nn.Linear(width, h)), (f"relu_{i}", nn.ReLU())]
        width = h
    layers.append((f"dense_{len(hidden) + 1}", nn.Linear(width, classes)))
    return _seq(*layers)


def cnn() -> nn.Module:
    return _seq(("conv2d_1", nn.Conv2d(1, 16, 3, padding=1)), ("relu_1", nn.ReLU()), ("maxpool2d_1", nn.MaxPool2d(2)),
                ("conv2d_2", nn.Conv2d(16, 32, 3, padding=1)), ("relu_2", nn.ReLU()), ("maxpool2d_2", nn.MaxPool2d(2)),
                ("flatten_1", nn.Flatten()), ("dense_1", nn.Linear(32 * 7 * 7, 10)))


class Recurrent(nn.Module):
    """s: (N, 32, 8) -> (N, 1): the last hidden state of lstm(64) or gru(64), then dense(1)."""

    def __init__(self, cell="lstm", features=8, units=64):
        super().__init__()
        self.cell = f"{cell}_1"                            # nnc's layer name, the weights' prefix
        setattr(self, self.cell, {"lstm": nn.LSTM, "gru": nn.GRU}[cell](features, units, batch_first=True))
        self.dense_1 = nn.Linear(units, 1)

    def forward(self, s):
        _, state = getattr(self, self.cell)(s)
        h = state[0] if isinstance(state, tuple) else state     # LSTM: (h, c); GRU: h
        return self.dense_1(h[-1])


class Transformer(nn.Module):
    """x: (N, T, E) -> (N, classes) logits. One post-norm encoder layer (as nn.TransformerEncoderLayer
    with norm_first=False, relu, no dropout), then the mean over T and a linear classifier."""

    def __init__(self, e=128, heads=4, ff=512, classes=10):
        super().__init__()
        self.multihead_attention_1 = nn.MultiheadAttention(e, heads, batch_first=True)
        self.layernorm_1 = nn.LayerNorm(e)
        self.dense_1 = nn.Linear(e, ff)
        self.dense_2 = nn.Linear(ff, e)
        self.layernorm_2 = nn.LayerNorm(e)
        self.dense_3 = nn.Linear(e, classes)

    def forward(self, x):
        a, _ = self.multihead_attention_1(x, x, x, need_weights=False)
        h = self.layernorm_1(x + a)
        f = self.dense_2(torch.relu(self.dense_1(h)))
        y = self.layernorm_2(h + f)
        return self.dense_3(y.mean(1))


def dwsep(c=32, out=64, classes=10) -> nn.Module:
    # NOTE: nnc's batchnorm momentum 0.9 (running = 0.9 * running + 0.1 * batch) is torch's momentum 0.1
    return _seq(("conv2d_1", nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)),
                ("batchnorm_1", nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)), ("relu_1", nn.ReLU()),
                ("conv2d_2", nn.Conv2d(c, out, 1, bias=False)),
                ("batchnorm_2", nn.BatchNorm2d(out, eps=1e-5, momentum=0.1)), ("relu_2", nn.ReLU()),
                ("globalavgpool2d_1", nn.AdaptiveAvgPool2d(1)), ("flatten_1", nn.Flatten()),
                ("dense_1", nn.Linear(out, classes)))


def convt() -> nn.Module:
    return _seq(("conv2d_transpose_1", nn.ConvTranspose2d(32, 32, 4, stride=2, padding=1)), ("relu_1", nn.ReLU()),
                ("conv2d_transpose_2", nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1)), ("relu_2", nn.ReLU()),
                ("conv2d_transpose_3", nn.ConvTranspose2d(16, 1, 3, padding=1)))


def zoo() -> nn.Module:
    return _seq(("conv2d_1", nn.Conv2d(1, 32, 3)), ("relu_1", nn.ReLU()), ("maxpool2d_1", nn.MaxPool2d(2)),
                ("conv2d_2", nn.Conv2d(32, 64, 3)), ("relu_2", nn.ReLU()), ("maxpool2d_2", nn.MaxPool2d(2)),
                ("flatten_1", nn.Flatten()), ("dropout_1", nn.Dropout(0.5)), ("dense_1", nn.Linear(64 * 5 * 5, 10)))


BUILDERS = {
    "mlp": mlp,
    "wide": lambda: mlp((1024, 1024)),
    "cnn": cnn,
    "lstm": Recurrent,
    "gru": lambda: Recurrent("gru"),
    "transformer": Transformer,
    "dwsep": dwsep,
    "convt": convt,
    "zoo": zoo,
    "tiny": lambda: _seq(("dense_1", nn.Linear(4, 3))),
}


def build(kind: str) -> nn.Module:
    """The torch model of a benchmark row (``mlp256`` is ``mlp``: the batch differs, not the model)."""
    return BUILDERS[kind.removesuffix("256")]()


def nnc_key(key: str) -> str:
    """nnc's weight key of a torch state_dict key: LSTM's ``weight_ih_l0`` is nnc's ``weight_ih``."""
    layer, param = key.rsplit(".", 1)
    return f"{layer}.{param.removesuffix('_l0')}"


def load_nnc_weights(model: nn.Module, weights: dict[str, np.ndarray]) -> None:
    """Copy nnc's weights (key -> array, PyTorch layouts) into ``model``.

    Raises ValueError unless every state_dict entry (batchnorm's ``num_batches_tracked`` counter
    aside) has an nnc weight of the same shape and every nnc weight is used."""
    state, used = {}, set()
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value
            continue
        k = nnc_key(key)
        if k not in weights:
            raise ValueError(f"torch weight {key!r} has no nnc weight {k!r}")
        arr = weights[k]
        if tuple(arr.shape) != tuple(value.shape):
            raise ValueError(f"{key}: torch shape {tuple(value.shape)}, nnc shape {arr.shape}")
        state[key] = torch.from_numpy(np.array(arr, dtype=np.float32))
        used.add(k)
    if set(weights) - used:
        raise ValueError(f"nnc weights without a torch counterpart: {sorted(set(weights) - used)}")
    model.load_state_dict(state)
