"""Speed of the torch engine: seconds per epoch against a hand-written PyTorch loop (the engine's
overhead) and against the NumPy runtime, and the scaling of ``--nproc 2``.

    .venv/bin/python benchmarks/torch_engine_speed.py [--epochs 3] [--models mlp,cnn,lstm,zoo,tiny]
                                                      [--device cpu|cuda] [--threads 2] [--no-scaling]

Models: the MLP, CNN and LSTM of ``benchmarks/train_speed.py`` (same data, batch 64, Adam, no
shuffling) and one zoo model, ``specs/zoo/keras_mnist_convnet.nnspec`` (two convolutions, max
pooling, dropout; 1,280 random 28x28 images, 10 classes); and ``tiny``, ``dense(3)`` on 4 features,
whose epoch is almost all per-batch bookkeeping (its seconds / 100 batches are the fixed cost of a
batch). Each column trains the same model from nnc's initial weights:

- ``engine``: ``Trainer.train_epoch`` with the torch engine (what ``nnc train --engine torch``
  does per epoch, without writing checkpoints): forward, nnc's loss on the returned arrays,
  backward, ``torch.optim`` step, the metric of the epoch;
- ``hand``: the loop a PyTorch user writes for that model (``nn.Sequential``, ``zero_grad``,
  forward, loss, ``backward``, ``step``, ``loss.item()`` and the metric per batch);
- ``numpy``: ``Trainer.train_epoch`` with the NumPy runtime.

``overhead`` = engine / hand - 1, the median over ``--epochs`` rounds of one epoch each, engine and hand
interleaved (after one warm-up epoch each); the NumPy runtime runs after them. All in this process. The 2-process scaling runs ``nnc train --engine torch --nproc 2``
and ``--nproc 1`` on the CNN (6,400 examples, 1 thread per process) and compares the median epoch
time from their ``history.csv`` (process start-up excluded). The same script runs unchanged with
``--device cuda`` on a machine with a GPU (not measured here: the machines of this project have none).
On a busy machine, ``--threads 1 --cpu-time`` (CPU seconds of this process) gives steadier ratios.
``--threads N`` sets torch's threads and the BLAS's (the script runs itself again with the BLAS's
thread variables set, as ``train_speed.py`` does).
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch_models  # noqa: E402
from train_speed import MODELS, TRAIN, make_data, rerun_with_blas_threads  # noqa: E402

from nnc.compiler.lower import compile_source  # noqa: E402
from nnc.runtime.graph import Graph  # noqa: E402
from nnc.runtime.train import Trainer  # noqa: E402

ZOO = dict(title="Keras MNIST convnet (zoo)", n=1280, x_shape=(1, 28, 28), classes=10,
           spec=(ROOT / "specs" / "zoo" / "keras_mnist_convnet.nnspec").read_text() + TRAIN.format(loss="cross_entropy", batch=64),
           target="class", batch=64)
# a model with (almost) no arithmetic: what is left is the cost per batch of the loop itself
TINY = dict(title="dense(3) on [4]: no compute", n=6400, x_shape=(4,), classes=3,
            spec="model tiny {\n    input x: [4]\n    dense(3) -> softmax\n}\n" + TRAIN.format(loss="cross_entropy", batch=64),
            target="class", batch=64)
ALL = {**{k: MODELS[k] for k in ("mlp", "cnn", "lstm")}, "zoo": ZOO, "tiny": TINY}
CLOCK = time.perf_counter           # --cpu-time: time.process_time


class HandRun:
    def __init__(self, kind, x, y, initial, device):
        import torch
        from torch import nn
        self.torch = torch
        self.model = torch_models.build(kind)
        torch_models.load_nnc_weights(self.model, initial)
        self.model.to(device).train()
        self.classify = kind != "lstm"
        self.loss = nn.CrossEntropyLoss() if self.classify else nn.MSELoss()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=0.001)
        self.x, self.y, self.device = torch.from_numpy(x), torch.from_numpy(y), device

    def epoch(self, batch: int = 64):
        t = CLOCK()
        total, metric, n = 0.0, 0.0, len(self.x)
        for s in range(0, n, batch):
            xb, yb = self.x[s:s + batch].to(self.device), self.y[s:s + batch].to(self.device)
            self.opt.zero_grad(set_to_none=True)
            out = self.model(xb)
            loss = self.loss(out, yb)
            loss.backward()
            self.opt.step()
            total += loss.item() * len(xb)
            metric += ((out.argmax(1) == yb).float().mean() if self.classify else (out - yb).abs().mean()).item() * len(xb)
        return CLOCK() - t, total / n


class TrainerRun:
    def __init__(self, cfg, x, y, engine=None):
        program = compile_source(cfg["spec"], "<bench>")
        self.graph = Graph(program.model, "float32")
        self.initial = self.graph.init_weights(program.seed)
        name = program.model.inputs[0].name
        self.trainer = Trainer(self.graph, program.train, {name: x}, y, engine=engine)
        self.state = self.trainer.new_state({k: v.copy() for k, v in self.initial.items()})

    def epoch(self):
        t = CLOCK()
        log = self.trainer.train_epoch(self.state)
        return CLOCK() - t, log.loss


def measure(run, epochs):
    _, first = run.epoch()
    return statistics.median(run.epoch()[0] for _ in range(epochs)), first


def measure_pair(a, b, epochs):
    """Both runs' medians, their epochs interleaved (a, b, a, b, ...) so that a change of the load on
    the machine hits both alike; and the median of the per-round ratios a / b."""
    (_, first_a), (_, first_b) = a.epoch(), b.epoch()
    ta, tb = [], []
    for _ in range(epochs):
        ta.append(a.epoch()[0])
        tb.append(b.epoch()[0])
    return (statistics.median(ta), first_a), (statistics.median(tb), first_b), statistics.median(
        x / y for x, y in zip(ta, tb))


def scaling(epochs: int) -> None:
    """--nproc 2 against --nproc 1 (both one thread per process) on the CNN with 6,400 examples."""
    cfg = MODELS["cnn"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(42)
        np.savez(tmp / "data.npz", x=rng.standard_normal((6400, 1, 28, 28)).astype(np.float32),
                 y=rng.integers(0, 10, 6400))
        spec = cfg["spec"].replace("train {", 'train {\n    data = npz("data.npz")')
        (tmp / "cnn.nnspec").write_text(spec)
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        rows = []
        for nproc in (1, 2):
            out = tmp / f"run{nproc}"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "nnc.cli", "train", str(tmp / "cnn.nnspec"), "--engine", "torch",
                            "--nproc", str(nproc), "--out", str(out), "--quiet", "--set", f"epochs={epochs + 1}"],
                           check=True, env=env, cwd=tmp, timeout=1800, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - t
            hist = list(csv.DictReader(io.StringIO((out / "history.csv").read_text())))
            rows.append((nproc, statistics.median(float(r["seconds"]) for r in hist[1:]), wall))
    print(f"\n--nproc scaling, CNN on 6,400 examples, 1 thread per process, median of {epochs} epochs after one:")
    print(f"{'processes':>9} {'s/epoch':>8} {'speed-up':>9} {'whole command s':>16}")
    for nproc, sec, wall in rows:
        print(f"{nproc:>9} {sec:8.3f} {rows[0][1] / sec:8.2f}x {wall:16.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--models", default="mlp,cnn,lstm,zoo,tiny")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--threads", type=int, default=2, help="torch threads and BLAS threads (CPU; default 2)")
    ap.add_argument("--no-scaling", action="store_true", help="skip the --nproc 2 measurement")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time this process' CPU seconds, not the wall clock (steadier on a busy machine; "
                         "use it with --threads 1)")
    args = ap.parse_args()
    code = rerun_with_blas_threads(args.threads)  # the NumPy runtime's column, as train_speed's
    if code is not None:
        return code
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    import torch
    from nnc.torch.engine import engine_factory
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__} on {device}, {torch.get_num_threads()} threads; numpy {np.__version__}, "
          f"BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS')}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"warm-up epoch, then the median of {args.epochs}; {'CPU' if args.cpu_time else 'wall-clock'} seconds\n")
    rows = []
    for kind in [k.strip() for k in args.models.split(",") if k.strip()]:
        cfg = ALL[kind]
        x, y = make_data(cfg)
        engine = TrainerRun(cfg, x, y, engine=engine_factory(device))
        hand = HandRun(kind, x, y, engine.initial, device)
        numpy_run = TrainerRun(cfg, x, y)
        (e, le), (h, lh), ratio = measure_pair(engine, hand, args.epochs)
        n, ln = measure(numpy_run, args.epochs)
        print(f"{kind}: first-epoch loss engine {le:.6f}  hand {lh:.6f}  numpy {ln:.6f}")
        rows.append((cfg["title"], cfg["n"], e, h, ratio, n))
    print()
    header = (f"{'model':<28} {'examples':>8} {'engine s':>9} {'hand s':>8} {'overhead':>9} {'numpy s':>8} "
              f"{'numpy/engine':>13}")
    print(header)
    print("-" * len(header))
    for title, n, e, h, ratio, nn_ in rows:
        print(f"{title:<28} {n:>8,} {e:9.3f} {h:8.3f} {100 * (ratio - 1):8.1f}% {nn_:8.3f} {nn_ / e:12.2f}x")
    print("\n(overhead: the median over rounds of engine / hand - 1, their epochs interleaved)")
    if not args.no_scaling and device.type == "cpu":
        scaling(args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
