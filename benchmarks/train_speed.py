"""Training speed of the NumPy runtime against PyTorch on the CPU: seconds per epoch.

    .venv/bin/python benchmarks/train_speed.py [--epochs 3] [--models mlp,cnn,...] [--threads 2]
                                               [--cpu-time] [--memory] [--verify]

For each model the same architecture, data, batch size, optimizer (Adam, lr 0.001) and initial
weights run through nnc's Trainer (``nnc.runtime.train.Trainer.train_epoch``: forward, fused loss,
backward, optimizer step; no checkpoint writing) and through a plain PyTorch loop (``zero_grad``,
forward, loss, ``backward``, ``step``) on the hand-written models of ``benchmarks/torch_models.py``.
nnc's initial weights are copied into the torch model (the weights contract uses PyTorch's names and
layouts) and both take the batches in file order, so their first-epoch losses must agree: they are
printed as a sanity check. Before timing a row the script checks that the two models are the same:
equal parameter counts, every weight matched, and one forward pass on the same weights and 8
examples agreeing (eval mode, and train mode for batchnorm's batch statistics); ``--verify`` runs
only these checks.

Threads: ``--threads N`` (default 2) runs the measurement in a child process whose environment sets
``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` to N (the BLAS reads them when
it loads), and torch uses N threads. ``--cpu-time`` times CPU seconds of the process
(``time.process_time``: all its threads, spinning ones included) instead of the wall clock; with
``--threads 1`` it is the steadiest measure on a busy machine.

Timing: one warm-up epoch, then the median of ``--epochs`` epochs, in the same process: all of nnc's
epochs, then all of torch's. (Interleaving them is worse, not fairer: OpenBLAS's worker threads keep
spinning for a while after a matrix product and slow down torch's OpenMP threads, and vice versa.)
``--rounds R`` repeats the pair R times per row (nnc's epochs, then torch's) and prints the median
of the rounds' ratios with each round's ratio after the row: the machine's speed drifts from
minute to minute, and a ratio is only as good as the two medians it divides.
nnc's epoch also computes the training metric (accuracy) per batch, as ``nnc train`` does; the torch
loop computes only the loss. Other processes on the machine skew the numbers: the load average is
printed first; run it on a quiet machine.

  mlp          784-256-128-10, relu, softmax + cross_entropy, batch 64, 6,400 random examples
  mlp256       the same, batch 256
  wide         784-1024-1024-10, relu, softmax + cross_entropy, batch 64, 6,400 examples
  cnn          conv2d(16,3,same)-relu-maxpool(2)-conv2d(32,3,same)-relu-maxpool(2)-flatten-dense(10)
               softmax + cross_entropy, 28x28 inputs, batch 64, 1,280 examples
  cnn256       the same, batch 256
  lstm         lstm(64) over 32 steps of 8 features, dense(1), mse, batch 64, 1,280 examples
  lstm256      the same, batch 256
  gru          gru(64) over 32 steps of 8 features, dense(1), mse, batch 64, 1,280 examples
  transformer  one post-norm Transformer encoder layer on T=128 steps of E=128 features: 4-head
               self-attention, add + layernorm, dense(512)-relu-dense(128), add + layernorm; the mean
               over the steps -> dense(10), softmax + cross_entropy, batch 64, 256 examples
  dwsep        a depthwise-separable block on 32x32x32 maps: depthwise conv 3x3 (groups=32, no bias),
               batchnorm, relu, 1x1 conv(64, no bias), batchnorm, relu; global average pool,
               dense(10), softmax + cross_entropy, batch 64, 1,280 examples
  convt        transposed-convolution upsampling: (32, 8, 8) -> conv2d_transpose(32, 4, stride 2,
               padding 1)-relu -> (16, 4, stride 2, padding 1)-relu -> (1, 3, padding 1): (1, 32, 32),
               mse, batch 64, 1,280 examples

Without torch installed the nnc column is still measured and the torch column says why it is empty.

GFLOP/s: FLOPs per example from nnc's catalogue (what ``nnc summary`` prints: multiply-adds of the
dense, convolution, recurrent and attention products counted as 2 FLOPs; element-wise ops count
0) times 3 for forward + backward (the two backward products of each forward product), times the
examples, over the epoch's seconds; the same count for both frameworks. Next to them, NumPy's own
float32 matrix-product rate in the same process (a 1024 x 1024 product, same threads and clock) as
the machine's limit. Peak memory (``--memory``): each framework trains the model for the warm-up
epoch plus one epoch in a fresh child process (nnc's child never imports torch), which reports its
peak resident set size (``VmHWM``; Linux only), interpreter and libraries included.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from nnc.compiler.lower import compile_source  # noqa: E402
from nnc.runtime.graph import Graph  # noqa: E402
from nnc.runtime.train import Trainer  # noqa: E402

TRAIN = """
train {{
    loss       = {loss}
    optimizer  = adam(lr=0.001)
    batch_size = {batch}
    shuffle    = false
    seed       = 0
}}
"""

SPECS = {
    "mlp": """
model mlp {
    input x: [784]
    dense(256) -> relu
    dense(128) -> relu
    dense(10) -> softmax
}
""",
    "wide": """
model wide {
    input x: [784]
    dense(1024) -> relu
    dense(1024) -> relu
    dense(10) -> softmax
}
""",
    "cnn": """
model cnn {
    input image: [1, 28, 28]
    conv2d(16, kernel=3, padding=same) -> relu
    maxpool2d(2)
    conv2d(32, kernel=3, padding=same) -> relu
    maxpool2d(2)
    flatten
    dense(10) -> softmax
}
""",
    "lstm": """
model seq {
    input s: [32, 8]
    lstm(64)
    dense(1)
}
""",
    "gru": """
model seq {
    input s: [32, 8]
    gru(64)
    dense(1)
}
""",
    "transformer": """
model encoder {
    input x: [128, 128]
    x0 = identity
    a = multihead_attention(4)
    h = add(x0, a) -> layernorm
    f = h -> dense(512) -> relu -> dense(128)
    add(h, f) -> layernorm
    mean(0)
    dense(10) -> softmax
}
""",
    "dwsep": """
model dwsep {
    input x: [32, 32, 32]
    conv2d(32, 3, padding=1, groups=32, bias=false) -> batchnorm -> relu
    conv2d(64, 1, bias=false) -> batchnorm -> relu
    globalavgpool2d
    dense(10) -> softmax
}
""",
    "convt": """
model convt {
    input x: [32, 8, 8]
    conv2d_transpose(32, 4, stride=2, padding=1) -> relu
    conv2d_transpose(16, 4, stride=2, padding=1) -> relu
    conv2d_transpose(1, 3, padding=1)
}
""",
}


def _row(title, spec, n, x_shape, target, batch=64, classes=10):
    loss = "cross_entropy" if target == "class" else "mse"
    return dict(title=title, spec=SPECS[spec] + TRAIN.format(loss=loss, batch=batch), n=n, x_shape=x_shape,
                target=target, classes=classes if target == "class" else None, batch=batch)


MODELS = {
    "mlp": _row("MLP 784-256-128-10", "mlp", 6400, (784,), "class"),
    "mlp256": _row("MLP 784-256-128-10", "mlp", 6400, (784,), "class", batch=256),
    "wide": _row("MLP 784-1024-1024-10", "wide", 6400, (784,), "class"),
    "cnn": _row("CNN 28x28 conv16-conv32", "cnn", 1280, (1, 28, 28), "class"),
    "cnn256": _row("CNN 28x28 conv16-conv32", "cnn", 1280, (1, 28, 28), "class", batch=256),
    "lstm": _row("LSTM 64 x 32 steps", "lstm", 1280, (32, 8), "lstm"),
    "lstm256": _row("LSTM 64 x 32 steps", "lstm", 1280, (32, 8), "lstm", batch=256),
    "gru": _row("GRU 64 x 32 steps", "gru", 1280, (32, 8), "lstm"),
    "transformer": _row("Transformer T128 E128 h4", "transformer", 256, (128, 128), "class"),
    "dwsep": _row("depthwise-sep 32x32x32", "dwsep", 1280, (32, 32, 32), "class"),
    "convt": _row("conv-transpose 8->32", "convt", 1280, (32, 8, 8), "image"),
}
DEFAULT_MODELS = ",".join(MODELS)
CLOCK = time.perf_counter           # --cpu-time: time.process_time


def make_data(cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """x: (n, *x_shape) float32 standard normal; y: class ids (n,) int64, or targets (n, 1) for
    the LSTM, (n, 1, 32, 32) for the transposed convolution, float32."""
    rng = np.random.default_rng(42)
    # NOTE: drawn as float32, not float64 then converted: the float64 temporary (twice the data)
    # would be the peak of every --memory child
    x = rng.standard_normal((cfg["n"], *cfg["x_shape"]), dtype=np.float32)
    if cfg["target"] == "class":
        y = rng.integers(0, cfg["classes"], cfg["n"]).astype(np.int64)
    elif cfg["target"] == "lstm":
        y = np.tanh(x[:, :, 0].mean(axis=1, keepdims=True)).astype(np.float32)
    else:   # an image 4x the input's size: the nearest upsampling of the input's channel mean
        m = x.mean(axis=1, keepdims=True)
        y = np.tanh(m.repeat(4, axis=2).repeat(4, axis=3)).astype(np.float32)
    return x, y


# ----------------------------------------------------------------------------------------------
# nnc

def initial_weights(cfg: dict) -> dict[str, np.ndarray]:
    """nnc's initial weights of the row's model (the train block's seed)."""
    program = compile_source(cfg["spec"], "<bench>")
    return Graph(program.model, "float32").init_weights(program.seed)


class NncRun:
    def __init__(self, cfg: dict, x: np.ndarray, y: np.ndarray):
        program = compile_source(cfg["spec"], "<bench>")
        self.program = program
        self.graph = Graph(program.model, "float32")
        self.initial = self.graph.init_weights(program.seed)
        self.input_name = program.model.inputs[0].name
        self.trainer = Trainer(self.graph, program.train, {self.input_name: x}, y)
        self.state = self.trainer.new_state({k: v.copy() for k, v in self.initial.items()})

    def epoch(self) -> tuple[float, float]:
        t = CLOCK()
        log = self.trainer.train_epoch(self.state)
        return CLOCK() - t, log.loss


# ----------------------------------------------------------------------------------------------
# torch

class TorchRun:
    def __init__(self, kind: str, cfg: dict, x: np.ndarray, y: np.ndarray, initial: dict[str, np.ndarray]):
        import torch
        from torch import nn

        import torch_models
        self.torch = torch
        self.model = torch_models.build(kind)
        torch_models.load_nnc_weights(self.model, initial)
        self.model.train()
        self.loss = nn.CrossEntropyLoss() if cfg["target"] == "class" else nn.MSELoss()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=0.001)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        self.batch = cfg["batch"]

    def epoch(self) -> tuple[float, float]:
        t = CLOCK()
        total, n, batch = 0.0, len(self.x), self.batch
        for s in range(0, n, batch):
            xb, yb = self.x[s:s + batch], self.y[s:s + batch]
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss(self.model(xb), yb)
            loss.backward()
            self.opt.step()
            total += loss.item() * len(xb)
        return CLOCK() - t, total / n


def verify(kind: str, cfg: dict, nnc_run: NncRun, x: np.ndarray) -> str:
    """Check that the torch model is nnc's: the same number of trainable parameters (and nnc's
    catalogue count), every weight matched by name and shape, and the outputs of one forward pass
    on nnc's initial weights and 8 examples equal to float32 rounding, in eval mode and in train mode
    (batchnorm on the batch's statistics). Raises AssertionError; returns a one-line summary."""
    import torch

    import torch_models
    model = torch_models.build(kind)
    torch_models.load_nnc_weights(model, nnc_run.initial)
    graph = nnc_run.graph
    nnc_params = sum(nnc_run.initial[k].size for k in graph.trainable_keys())
    torch_params = sum(p.numel() for p in model.parameters())
    assert nnc_params == torch_params == nnc_run.program.model.params, \
        f"{kind}: parameters nnc {nnc_params:,} (catalogue {nnc_run.program.model.params:,}), torch {torch_params:,}"
    xb = x[:8]
    worst = 0.0
    for training in (False, True):
        weights = {k: v.copy() for k, v in nnc_run.initial.items()}       # train mode updates batchnorm state
        out = graph.forward({nnc_run.input_name: xb}, weights, training=training)
        (z,) = out.values()
        model.train(training)
        with torch.no_grad():
            ref = model(torch.from_numpy(xb))
            if cfg["target"] == "class":
                ref = torch.softmax(ref, dim=1)
        ref = ref.numpy()
        assert z.shape == ref.shape, f"{kind}: output shapes nnc {z.shape}, torch {ref.shape}"
        err = float(np.max(np.abs(z - ref)) / (np.max(np.abs(ref)) + 1e-30))
        assert err < 1e-4, f"{kind} ({'train' if training else 'eval'} mode): forward outputs differ by {err:.1e} " \
                           f"(relative to the largest output)"
        worst = max(worst, err)
    return f"{nnc_params:,} parameters in both, forward outputs agree to {worst:.1e}"


# ----------------------------------------------------------------------------------------------

def measure(run, epochs: int) -> tuple[float, float]:
    """(median seconds per epoch after a warm-up epoch, the warm-up (first) epoch's mean loss)."""
    _, first_loss = run.epoch()
    times = [run.epoch()[0] for _ in range(epochs)]
    return statistics.median(times), first_loss


def matmul_gflops() -> float:
    """NumPy's float32 matrix-product rate: the median of 7 (1024 x 1024) products, on CLOCK."""
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    a @ a
    times = []
    for _ in range(7):
        t = CLOCK()
        a @ a
        times.append(CLOCK() - t)
    return 2 * 1024 ** 3 / statistics.median(times) / 1e9


def child(which: str, threads: int) -> int:
    """``--child nnc:mlp``: train the warm-up epoch and one more, print the peak RSS in MiB."""
    fw, kind = which.split(":")
    cfg = MODELS[kind]
    x, y = make_data(cfg)
    if fw == "nnc":
        run = NncRun(cfg, x, y)
    else:
        import torch
        torch.set_num_threads(threads)
        run = TorchRun(kind, cfg, x, y, initial_weights(cfg))
    run.epoch()
    run.epoch()
    # NOTE: VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
    with open("/proc/self/status") as fh:
        hwm = next(line for line in fh if line.startswith("VmHWM:"))
    print(int(hwm.split()[1]) / 1024)                                   # kB -> MiB
    return 0


def peak_mib(fw: str, kind: str, threads: int) -> float | None:
    out = subprocess.run([sys.executable, __file__, "--child", f"{fw}:{kind}", "--threads", str(threads)],
                         capture_output=True, text=True, timeout=1200)
    return float(out.stdout.split()[-1]) if out.returncode == 0 and out.stdout.strip() else None


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def rerun_with_blas_threads(threads: int) -> int | None:
    """The BLAS reads its thread count when it loads: unless the environment already sets it to
    ``threads``, run the script that was started again, in a child with ``THREAD_VARS`` set, and
    give its exit code (None: already set, go on)."""
    if all(os.environ.get(v) == str(threads) for v in THREAD_VARS):
        return None
    env = {**os.environ, **{v: str(threads) for v in THREAD_VARS}}
    return subprocess.run([sys.executable, sys.argv[0], *sys.argv[1:]], env=env).returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up (median)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated, of: {DEFAULT_MODELS}")
    ap.add_argument("--threads", type=int, default=2, help="torch threads and BLAS threads (default 2)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="CPU seconds of the process instead of wall-clock seconds (steadier with --threads 1)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="per row, nnc's and torch's epochs take turns this many times: medians, and "
                         "each round's ratio (the machine's speed drifts between minutes)")
    ap.add_argument("--memory", action="store_true", help="also measure peak memory (child processes)")
    ap.add_argument("--verify", action="store_true",
                    help="only check that each torch model is nnc's (parameters, forward outputs)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    for k in kinds:
        if k not in MODELS:
            ap.error(f"unknown model {k!r}; choose from {DEFAULT_MODELS}")
    code = rerun_with_blas_threads(args.threads)
    if code is not None:
        return code
    if args.child:
        return child(args.child, args.threads)
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time

    try:
        import torch
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        torch_note = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        torch = None
        torch_note = "torch is not installed: the torch column is skipped (pip install torch to compare)"
    print(f"python {platform.python_version()}, numpy {np.__version__}; {torch_note}; "
          f"BLAS threads {args.threads} (environment)")
    load = ""
    if hasattr(os, "getloadavg"):
        load = f"; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other processes skew timings)"
    clock = "CPU seconds (process_time)" if args.cpu_time else "wall-clock seconds"
    print(f"warm-up epoch, then the median of {args.epochs} epochs, {clock}; nnc first, then torch{load}")

    if args.verify:
        if torch is None:
            print("--verify needs torch")
            return 1
        for kind in kinds:
            cfg = MODELS[kind]
            x, y = make_data(cfg)
            print(f"{kind}: {verify(kind, cfg, NncRun(cfg, x, y), x)}")
        return 0
    limit = matmul_gflops()
    print(f"NumPy float32 matrix product (1024 x 1024): {limit:.1f} GFLOP/s in this process\n")

    rows = []
    for kind in kinds:
        cfg = MODELS[kind]
        x, y = make_data(cfg)
        nnc_run = NncRun(cfg, x, y)
        flops = 3 * nnc_run.program.model.flops * cfg["n"]
        if torch is not None:
            check = verify(kind, cfg, nnc_run, x)
        nnc_s, nnc_loss = measure(nnc_run, args.epochs)
        ratios = []
        if torch is not None:
            torch_run = TorchRun(kind, cfg, x, y, nnc_run.initial)
            torch_s, torch_loss = measure(torch_run, args.epochs)
            print(f"{kind}: {check}; first-epoch loss nnc {nnc_loss:.6f} torch {torch_loss:.6f} "
                  f"(relative difference {abs(nnc_loss - torch_loss) / abs(torch_loss):.1e})", flush=True)
            # --rounds: the two take turns again, a round's ratio from its own pair of medians
            nnc_all, torch_all, ratios = [nnc_s], [torch_s], [torch_s / nnc_s]
            for _ in range(args.rounds - 1):
                nnc_all.append(statistics.median(nnc_run.epoch()[0] for _ in range(args.epochs)))
                torch_all.append(statistics.median(torch_run.epoch()[0] for _ in range(args.epochs)))
                ratios.append(torch_all[-1] / nnc_all[-1])
            nnc_s, torch_s = statistics.median(nnc_all), statistics.median(torch_all)
            del torch_run
        else:
            torch_s = None
            print(f"{kind}: first-epoch loss  nnc {nnc_loss:.6f}", flush=True)
        del nnc_run
        mem = (peak_mib("nnc", kind, args.threads), peak_mib("torch", kind, args.threads) if torch is not None
               else None) if args.memory else (None, None)
        rows.append((kind, cfg["title"], cfg["batch"], nnc_s, torch_s, flops, mem, ratios))

    def num(v, fmt, width):
        return f"{v:{width}{fmt}}" if v is not None else f"{'-':>{width}}"

    print()
    header = (f"{'row':<12} {'model':<26} {'batch':>5} {'nnc s/ep':>9} {'torch s/ep':>10} {'torch/nnc':>9} "
              f"{'nnc GF/s':>8} {'torch GF/s':>10} {'nnc MiB':>8} {'torch MiB':>9}")
    print(header)
    print("-" * len(header))
    for kind, title, batch, nnc_s, torch_s, flops, (nnc_m, torch_m), ratios in rows:
        # with --rounds, the median of the rounds' ratios; each round's after the row
        ratio = statistics.median(ratios) if ratios else None
        each = "  " + " ".join(f"{r:.2f}" for r in ratios) if len(ratios) > 1 else ""
        print(f"{kind:<12} {title:<26} {batch:>5} {nnc_s:9.3f} {num(torch_s, '.3f', 10)} {num(ratio, '.2f', 9)} "
              f"{flops / nnc_s / 1e9:8.2f} {num(torch_s and flops / torch_s / 1e9, '.2f', 10)} "
              f"{num(nnc_m, '.0f', 8)} {num(torch_m, '.0f', 9)}{each}")
    print(f"(GF/s: nnc's catalogue FLOPs x 3 (forward + backward) per {'CPU ' if args.cpu_time else ''}second; "
          f"NumPy's float32 matrix product: {limit:.1f} GF/s; {args.threads} thread(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
