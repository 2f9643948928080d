"""The zoo (specs/zoo/): each spec checks, has exactly the parameters and FLOPs of the equivalent
PyTorch model (written by hand here: no torchvision), and the small ones, exported with that torch
model's weights, give onnxruntime outputs equal to torch's. Two of them train on generated data to
a stated quality.

The torch models register their layers in the spec's order, so their ``state_dict`` (without
``num_batches_tracked``) lines up with nnc's weights one to one; the mapping checks every shape.
FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add of matrix
products and convolutions, as nnc counts) on the meta device, so no real computation runs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from nnc.compiler.lower import compile_source  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "specs" / "zoo"


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


# spec -> (the torch model and its input shape, whether to export it and compare with torch)
ZOO_MODELS = {
    "resnet18": (resnet18, False),
    "vgg11": (vgg11, False),
    "keras_mnist_convnet": (keras_mnist_convnet, True),
    "conv_autoencoder": (conv_autoencoder, True),
    "unet_small": (unet_small, True),
}


def test_every_zoo_spec_has_a_reference_here():
    assert sorted(p.stem for p in ZOO.glob("*.nnspec")) == sorted(ZOO_MODELS)


def _program(name: str):
    path = ZOO / f"{name}.nnspec"
    return compile_source(path.read_text(encoding="utf-8"), str(path))


def _torch_flops(model, shape) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    model = model.to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.empty((1, *shape), device="meta"))
    return counter.get_total_flops()


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


@pytest.mark.parametrize("name", sorted(ZOO_MODELS))
def test_parameters_and_flops_equal_torchs(name):
    program = _program(name)
    assert all(a.actual is not None for a in program.model.assertions)
    build, _ = ZOO_MODELS[name]
    model, shape = build()
    torch_params = sum(p.numel() for p in model.parameters())
    assert program.model.params == torch_params
    assert program.model.flops == _torch_flops(model, shape)
    assert list(program.model.inputs[0].shape) == list(shape)


@pytest.mark.parametrize("name", sorted(n for n, (_, export) in ZOO_MODELS.items() if export))
def test_export_with_torchs_weights_equals_torch(name, tmp_path):
    import onnxruntime as ort

    from nnc.api import export_onnx
    program = _program(name)
    build, _ = ZOO_MODELS[name]
    torch.manual_seed(0)
    model, shape = build()
    for m in model.modules():  # lively batchnorm statistics, so that their export is exercised
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    weights = torch_weights(model, program)
    out = tmp_path / f"{name}.onnx"
    export_onnx(program, out, weights=weights)
    x = np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
