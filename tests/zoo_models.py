"""Hand-written PyTorch models equivalent to the zoo specs (specs/zoo/), no torchvision: the
references of tests/test_zoo.py and benchmarks/zoo_table.py. Each registers its layers in the
spec's order, so that its ``state_dict`` (without ``num_batches_tracked``) lines up one to one
with nnc's weights (:func:`torch_weights`)."""
from __future__ import annotations

import numpy as np
import torch

nn = torch.nn


# ----------------------------------------------------------------------------------------------
# the reference models, layer by layer in the spec's order

class Residual(nn.Module):
    """torchvision's BasicBlock: conv-bn-relu-conv-bn plus a shortcut (a 1x1 projection when strided)."""

    def __init__(self, cin: int, c: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.down = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c)) if stride > 1 else None

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.down(x) if self.down is not None else x))


def resnet18():
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for c in (64, 128, 256, 512):
        layers += [Residual(cin, c, 1 if c == 64 else 2), Residual(c, c, 1)]
        cin = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    return nn.Sequential(*layers), (3, 224, 224)


def vgg11():
    layers, cin = [], 3
    for c, convs in ((64, 1), (128, 1), (256, 2), (512, 2), (512, 2)):
        for _ in range(convs):
            layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU()]
            cin = c
        layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 4096),
               nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 1000)]
    return nn.Sequential(*layers), (3, 224, 224)


def keras_mnist_convnet():
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10),
                         nn.Softmax(-1)), (1, 28, 28)


def conv_autoencoder():
    return nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 16, 3, 2, 1), nn.ReLU(),
                         nn.ConvTranspose2d(16, 32, 3, 2, 1, output_padding=1), nn.ReLU(),
                         nn.ConvTranspose2d(32, 1, 3, 2, 1, output_padding=1), nn.Sigmoid()), (1, 28, 28)


class UNet(nn.Module):
    def __init__(self, base: int = 8):
        super().__init__()

        def double(cin, c):
            return nn.Sequential(nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.e1 = double(1, base)
        self.e2 = double(base, 2 * base)
        self.mid = double(2 * base, 4 * base)
        self.up2 = nn.Conv2d(4 * base, 2 * base, 1)
        self.d2 = double(4 * base, 2 * base)
        self.up1 = nn.Conv2d(2 * base, base, 1)
        self.d1 = double(2 * base, base)
        self.head = nn.Conv2d(base, 1, 1)

    def forward(self, x):
        e1 = self.e1(x)
        e2 = self.e2(nn.functional.max_pool2d(e1, 2))
        m = self.mid(nn.functional.max_pool2d(e2, 2))
        u = self.up2(nn.functional.interpolate(m, scale_factor=2, mode="nearest"))
        d2 = self.d2(torch.cat([u, e2], 1))
        u = self.up1(nn.functional.interpolate(d2, scale_factor=2, mode="nearest"))
        d1 = self.d1(torch.cat([u, e1], 1))
        return torch.sigmoid(self.head(d1))


def unet_small():
    return UNet(), (1, 32, 32)


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block: 1x1 expansion (unless t = 1), 3x3 depthwise, linear 1x1."""

    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hidden = cin * t
        layers = [] if t == 1 else [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


def mobilenet_v2():
    layers = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()]
    cin = 32
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    layers += [nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(), nn.AdaptiveAvgPool2d(1),
               nn.Flatten(), nn.Dropout(0.2), nn.Linear(1280, 1000)]
    return nn.Sequential(*layers), (3, 224, 224)


class EncoderLayer(nn.Module):
    """A post-norm Transformer encoder layer, as BERT's (attention, add & norm, GELU feed-forward)."""

    def __init__(self, e: int, heads: int, ff: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(e, heads, dropout=0.1, batch_first=True)
        self.norm1 = nn.LayerNorm(e, eps=1e-12)
        self.ff1 = nn.Linear(e, ff)
        self.ff2 = nn.Linear(ff, e)
        self.norm2 = nn.LayerNorm(e, eps=1e-12)

    def forward(self, x):
        # NOTE: need_weights=True takes the explicit matmul path, which the FLOP counter sees (the CPU
        # scaled_dot_product_attention kernel is not counted); the output is the same
        h = self.norm1(x + self.attn(x, x, x, need_weights=True)[0])
        return self.norm2(h + self.ff2(nn.functional.gelu(self.ff1(h))))


class Positions(nn.Module):
    """A learned position embedding added to its input (nnc's positional_embedding)."""

    def __init__(self, steps: int, e: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(steps, e) * 0.02)

    def forward(self, x):
        return x + self.weight


class BertTiny(nn.Module):
    def __init__(self, vocab=30522, e=128, steps=128):
        super().__init__()
        self.tokens = nn.Embedding(vocab, e)
        self.positions = Positions(steps, e)
        self.norm = nn.LayerNorm(e, eps=1e-12)
        self.layers = nn.ModuleList([EncoderLayer(e, 2, 4 * e) for _ in range(2)])
        self.pooler = nn.Linear(e, e)
        self.classifier = nn.Linear(e, 2)

    def forward(self, ids):
        x = self.norm(self.positions(self.tokens(ids)))
        for layer in self.layers:
            x = layer(x)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


def bert_tiny():
    return BertTiny(), ("int64", 128, 30522)


class Tagger(nn.Module):
    def __init__(self, words=5000, tags=17):
        super().__init__()
        self.embed = nn.Embedding(words, 64)
        self.lstm = nn.LSTM(64, 64, bidirectional=True, batch_first=True)
        self.out = nn.Linear(128, tags)

    def forward(self, ids):
        return torch.softmax(self.out(self.lstm(self.embed(ids))[0]), -1)


def bilstm_tagger():
    return Tagger(), ("int64", 50, 5000)


def cnn1d_timeseries():
    return nn.Sequential(nn.Conv1d(1, 16, 7, padding="same", bias=False), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.MaxPool1d(2), nn.Conv1d(16, 32, 5, padding="same", bias=False), nn.BatchNorm1d(32),
                         nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(32, 32, 3, padding="same", bias=False),
                         nn.BatchNorm1d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, 4), nn.Softmax(-1)), (1, 128)


# spec -> (the torch model and its input shape, whether to export it and compare with torch)
ZOO_MODELS = {
    "resnet18": (resnet18, False),
    "vgg11": (vgg11, False),
    "keras_mnist_convnet": (keras_mnist_convnet, True),
    "conv_autoencoder": (conv_autoencoder, True),
    "unet_small": (unet_small, True),
    "mobilenet_v2": (mobilenet_v2, False),
    "bert_tiny": (bert_tiny, True),
    "bilstm_tagger": (bilstm_tagger, True),
    "cnn1d_timeseries": (cnn1d_timeseries, True),
}


def example(shape, batch: int, rng, device=None):
    """A batch for the model: float features, or token ids for ("int64", T, vocab)."""
    if shape[0] == "int64":
        return torch.from_numpy(rng.integers(0, shape[2], size=(batch, shape[1])).astype(np.int64))
    return torch.from_numpy(rng.standard_normal((batch, *shape)).astype(np.float32))


def torch_weights(model, program) -> dict[str, np.ndarray]:
    """nnc's weights from the torch model's, matched in order, every shape checked."""
    expected = [(f"{n.id}.{w.name}", tuple(w.shape)) for n in program.model.nodes for w in n.weights]
    state = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert len(state) == len(expected), (len(state), len(expected))
    out = {}
    for (key, shape), (tkey, value) in zip(expected, state):
        assert tuple(value.shape) == shape, (key, tkey, shape, tuple(value.shape))
        out[key] = value.detach().to(torch.float32).numpy().copy()
    return out


def torch_flops(model, shape) -> int:
    """FLOPs of one example; on the meta device (no computation) except for token models, whose
    embedding lookup needs real ids. oneDNN is off so that the CPU LSTM is counted."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    if shape[0] == "int64":
        x = example(shape, 1, np.random.default_rng(0))
    else:
        model = model.to("meta")
        x = torch.empty((1, *shape), device="meta")
    model.eval()
    # NOTE: the fused fast path of nn.MultiheadAttention in eval mode is invisible to the counter
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.backends.mkldnn.flags(enabled=False), counter, torch.no_grad():
            model(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return counter.get_total_flops()


def lively(model):
    """Random batchnorm statistics (so that their export is exercised); eval mode."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()
