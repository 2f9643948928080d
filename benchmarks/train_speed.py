"""Training speed of the NumPy runtime against PyTorch on the CPU: seconds per epoch.

    .venv/bin/python benchmarks/train_speed.py [--epochs 3] [--models mlp,cnn,lstm]

For each model the same architecture, data, batch size, optimizer and initial weights run through
nnc's Trainer (``nnc.runtime.train.Trainer.train_epoch``: forward, fused loss, backward, optimizer
step; no checkpoint writing) and through a plain PyTorch loop (``zero_grad``, forward, loss,
``backward``, ``step``) with ``torch.set_num_threads(2)``. nnc's initial weights are copied into the
torch model (the weights contract uses PyTorch's names and layouts) and both take the batches in
file order, so their first-epoch losses must agree: they are printed as a sanity check.

Timing: one warm-up epoch, then the median of ``--epochs`` epochs, in the same process: all of nnc's
epochs, then all of torch's. (Interleaving them is worse, not fairer: OpenBLAS's worker threads keep
spinning for a while after a matrix product and slow down torch's OpenMP threads, and vice versa.)
nnc's epoch also computes the training metric (accuracy) per batch, as ``nnc train`` does; the torch
loop computes only the loss. Other processes on the machine skew the numbers: the load average is
printed first; run it on a quiet machine.

  mlp   784-256-128-10, relu, softmax + cross_entropy, adam, batch 64, 6,400 random examples
  cnn   conv2d(16,3,same)-relu-maxpool(2)-conv2d(32,3,same)-relu-maxpool(2)-flatten-dense(10)
        softmax + cross_entropy, adam, 28x28 inputs, batch 64, 1,280 examples
  lstm  lstm(64) over 32 steps of 8 features, dense(1), mse, adam, batch 64, 1,280 examples

Without torch installed the nnc column is still measured and the torch column says why it is empty.

GFLOP/s: the matrix-product arithmetic of an epoch (``flops``: multiply-adds counted as 2 FLOPs, the
forward's products times 3 for forward + the two backward products; the same count for both
frameworks) over the epoch's seconds, next to NumPy's own float32 matrix-product rate on this
machine (a 1024 x 1024 product) as the limit. Peak memory (``--memory``): each framework trains the
model for the warm-up epoch plus one epoch in a fresh child process (nnc's child never imports
torch), which reports its peak resident set size (``VmHWM``; Linux only), interpreter and libraries
included.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nnc.compiler.lower import compile_source  # noqa: E402
from nnc.runtime.graph import Graph  # noqa: E402
from nnc.runtime.train import Trainer  # noqa: E402

TRAIN = """
train {{
    loss       = {loss}
    optimizer  = adam(lr=0.001)
    batch_size = 64
    shuffle    = false
    seed       = 0
}}
"""

MODELS = {
    "mlp": dict(
        title="MLP 784-256-128-10",
        spec="""
model mlp {
    input x: [784]
    dense(256) -> relu
    dense(128) -> relu
    dense(10) -> softmax
}
""" + TRAIN.format(loss="cross_entropy"),
        n=6400, x_shape=(784,), classes=10,
        flops=2 * (784 * 256 + 256 * 128 + 128 * 10)),
    "cnn": dict(
        title="CNN 28x28 conv16-conv32",
        spec="""
model cnn {
    input image: [1, 28, 28]
    conv2d(16, kernel=3, padding=same) -> relu
    maxpool2d(2)
    conv2d(32, kernel=3, padding=same) -> relu
    maxpool2d(2)
    flatten
    dense(10) -> softmax
}
""" + TRAIN.format(loss="cross_entropy"),
        n=1280, x_shape=(1, 28, 28), classes=10,
        flops=2 * (9 * 1 * 16 * 28 * 28 + 9 * 16 * 32 * 14 * 14 + 32 * 7 * 7 * 10)),
    "lstm": dict(
        title="LSTM 64 x 32 steps",
        spec="""
model seq {
    input s: [32, 8]
    lstm(64)
    dense(1)
}
""" + TRAIN.format(loss="mse"),
        n=1280, x_shape=(32, 8), classes=None,
        flops=2 * (32 * (8 + 64) * 4 * 64 + 64)),
}


def make_data(cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    x = rng.standard_normal((cfg["n"], *cfg["x_shape"])).astype(np.float32)
    if cfg["classes"]:
        y = rng.integers(0, cfg["classes"], cfg["n"]).astype(np.int64)
    else:
        y = np.tanh(x[:, :, 0].mean(axis=1, keepdims=True)).astype(np.float32)
    return x, y


# ----------------------------------------------------------------------------------------------
# nnc

class NncRun:
    def __init__(self, cfg: dict, x: np.ndarray, y: np.ndarray):
        program = compile_source(cfg["spec"], "<bench>")
        self.graph = Graph(program.model, "float32")
        self.initial = self.graph.init_weights(program.seed)
        name = program.model.inputs[0].name
        self.trainer = Trainer(self.graph, program.train, {name: x}, y)
        self.state = self.trainer.new_state({k: v.copy() for k, v in self.initial.items()})

    def epoch(self) -> tuple[float, float]:
        t = time.perf_counter()
        log = self.trainer.train_epoch(self.state)
        return time.perf_counter() - t, log.loss


# ----------------------------------------------------------------------------------------------
# torch

class TorchRun:
    def __init__(self, kind: str, x: np.ndarray, y: np.ndarray, initial: dict[str, np.ndarray]):
        import torch
        from torch import nn
        self.torch = torch
        if kind == "mlp":
            self.model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                                       nn.Linear(128, 10))
            names = {"0": "dense_1", "2": "dense_2", "4": "dense_3"}
            self.loss = nn.CrossEntropyLoss()
        elif kind == "cnn":
            self.model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                       nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                       nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
            names = {"0": "conv2d_1", "3": "conv2d_2", "7": "dense_1"}
            self.loss = nn.CrossEntropyLoss()
        else:
            class Seq(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.lstm = nn.LSTM(8, 64, batch_first=True)
                    self.dense = nn.Linear(64, 1)

                def forward(self, s):
                    _, (h, _) = self.lstm(s)
                    return self.dense(h[-1])
            self.model = Seq()
            names = {"lstm": "lstm_1", "dense": "dense_1"}
            self.loss = nn.MSELoss()
        state = {}
        for key in self.model.state_dict():
            layer, param = key.split(".", 1)
            param = param.removesuffix("_l0")           # torch's LSTM: weight_ih_l0 -> weight_ih
            state[key] = torch.from_numpy(initial[f"{names[layer]}.{param}"].copy())
        self.model.load_state_dict(state)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=0.001)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def epoch(self, batch: int = 64) -> tuple[float, float]:
        t = time.perf_counter()
        total, n = 0.0, len(self.x)
        for s in range(0, n, batch):
            xb, yb = self.x[s:s + batch], self.y[s:s + batch]
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss(self.model(xb), yb)
            loss.backward()
            self.opt.step()
            total += loss.item() * len(xb)
        return time.perf_counter() - t, total / n


# ----------------------------------------------------------------------------------------------

def measure(run, epochs: int) -> tuple[float, float]:
    """(median seconds per epoch after a warm-up epoch, the warm-up (first) epoch's mean loss)."""
    _, first_loss = run.epoch()
    times = [run.epoch()[0] for _ in range(epochs)]
    return statistics.median(times), first_loss


def matmul_gflops() -> float:
    """NumPy's float32 matrix-product rate on this machine: the median of 5 (1024 x 1024) products."""
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    a @ a
    times = []
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return 2 * 1024 ** 3 / statistics.median(times) / 1e9


def child(which: str) -> int:
    """``--child nnc:mlp``: train the warm-up epoch and one more, print the peak RSS in MiB."""
    fw, kind = which.split(":")
    cfg = MODELS[kind]
    x, y = make_data(cfg)
    nnc_run = NncRun(cfg, x, y)
    run = nnc_run if fw == "nnc" else TorchRun(kind, x, y, nnc_run.initial)
    if fw != "nnc":
        del nnc_run
        import torch
        torch.set_num_threads(2)
    run.epoch()
    run.epoch()
    # NOTE: VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
    with open("/proc/self/status") as fh:
        hwm = next(line for line in fh if line.startswith("VmHWM:"))
    print(int(hwm.split()[1]) / 1024)                                   # kB -> MiB
    return 0


def peak_mib(fw: str, kind: str) -> float | None:
    import subprocess
    out = subprocess.run([sys.executable, __file__, "--child", f"{fw}:{kind}"], capture_output=True,
                         text=True, timeout=600)
    return float(out.stdout.split()[-1]) if out.returncode == 0 and out.stdout.strip() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up (median)")
    ap.add_argument("--models", default="mlp,cnn,lstm", help="comma-separated: mlp, cnn, lstm")
    ap.add_argument("--memory", action="store_true", help="also measure peak memory (child processes)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    for k in kinds:
        if k not in MODELS:
            ap.error(f"unknown model {k!r}; choose from {', '.join(MODELS)}")

    try:
        import torch
        torch.set_num_threads(2)
        torch.manual_seed(0)
        torch_note = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        torch = None
        torch_note = "torch is not installed: the torch column is skipped (pip install torch to compare)"
    print(f"python {platform.python_version()}, numpy {np.__version__}; {torch_note}")
    load = ""
    if hasattr(os, "getloadavg"):
        load = f"; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other processes skew timings)"
    print(f"warm-up epoch, then the median of {args.epochs} epochs; nnc first, then torch{load}")
    limit = matmul_gflops()
    print(f"NumPy float32 matrix product (1024 x 1024): {limit:.1f} GFLOP/s on this machine\n")

    rows = []
    for kind in kinds:
        cfg = MODELS[kind]
        x, y = make_data(cfg)
        nnc_run = NncRun(cfg, x, y)
        nnc_s, nnc_loss = measure(nnc_run, args.epochs)
        if torch is not None:
            torch_run = TorchRun(kind, x, y, nnc_run.initial)
            torch_s, torch_loss = measure(torch_run, args.epochs)
            print(f"{kind}: first-epoch loss  nnc {nnc_loss:.6f}  torch {torch_loss:.6f}  "
                  f"(relative difference {abs(nnc_loss - torch_loss) / abs(torch_loss):.1e})")
        else:
            torch_s = None
            print(f"{kind}: first-epoch loss  nnc {nnc_loss:.6f}")
        mem = (peak_mib("nnc", kind), peak_mib("torch", kind) if torch is not None else None) \
            if args.memory else (None, None)
        rows.append((cfg["title"], cfg["n"], nnc_s, torch_s, 3 * cfg["flops"] * cfg["n"], mem))

    def num(v, fmt, width):
        return f"{v:{width}{fmt}}" if v is not None else f"{'-':>{width}}"

    print()
    header = (f"{'model':<26} {'batch':>5} {'nnc s/ep':>9} {'torch s/ep':>10} {'torch/nnc':>9} "
              f"{'nnc GF/s':>8} {'torch GF/s':>10} {'nnc MiB':>8} {'torch MiB':>9}")
    print(header)
    print("-" * len(header))
    for title, n, nnc_s, torch_s, flops, (nnc_m, torch_m) in rows:
        ratio = torch_s / nnc_s if torch_s is not None else None
        print(f"{title:<26} {64:>5} {nnc_s:9.3f} {num(torch_s, '.3f', 10)} {num(ratio, '.2f', 9)} "
              f"{flops / nnc_s / 1e9:8.2f} {num(torch_s and flops / torch_s / 1e9, '.2f', 10)} "
              f"{num(nnc_m, '.0f', 8)} {num(torch_m, '.0f', 9)}")
    print(f"(GF/s: the epoch's matrix-product FLOPs per second; the machine's NumPy limit is {limit:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
