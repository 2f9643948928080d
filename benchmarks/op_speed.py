"""Per-op kernel speed: nnc's NumPy kernels against PyTorch's CPU ops (2 threads), forward and
backward, at realistic sizes, in one run.

    .venv/bin/python benchmarks/op_speed.py [--repeat 5] [--only multihead_attention,conv2d] [--threads 2]

Each op is compiled from a one-line spec (so its attributes are the compiler's), run on float32
arrays, and timed as the median of ``--repeat`` runs of forward and of backward (the gradient of
sum(y * R)) as forward plus backward (``f+b``). torch runs the same computation with autograd. The
four timings of a case (nnc forward, torch forward, nnc f+b, torch f+b) are taken round-robin, one
run of each per round, so a change in the machine's load affects all four alike. The last column
is torch's time over nnc's (above 1: nnc is faster). The attention case is the issue's T = 128,
E = 128, 4 heads, batch 32; gelu [128, 512] is a Transformer feed-forward's hidden layer.

``--threads N`` sets torch's thread count and limits NumPy's BLAS to N threads (through
threadpoolctl, when installed): ``--threads 1`` compares the arithmetic and memory traffic of the
kernels without thread hand-offs, which dominate on a machine whose other core is busy.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from nnc.compiler.lower import compile_source
from nnc.runtime.alloc import keep_freed_memory
from nnc.runtime.kernels import KERNELS, Ctx

F = torch.nn.functional
torch.set_num_threads(2)


def _conv2d(x, w, a):
    p = a["pads"]
    x = F.pad(x, (p[1], p[3], p[0], p[2]))
    return F.conv2d(x, w["weight"], w.get("bias"), a["stride"], 0, a["dilation"], a["groups"])


def _conv1d(x, w, a):
    p = a["pads"]
    return F.conv1d(F.pad(x, (p[0], p[1])), w["weight"], w.get("bias"), a["stride"], 0, a["dilation"], a["groups"])


def _lstm(x, w, a):
    m = torch.nn.LSTM(x.shape[-1], a["units"], num_layers=a["layers"], bidirectional=a["bidirectional"],
                      batch_first=True)
    m.load_state_dict({k: v.detach() for k, v in w.items()})
    out, (h, _) = m(x)
    return out if a["return_sequences"] else torch.cat([h[-2], h[-1]], -1) if a["bidirectional"] else h[-1]


def _mha(x, w, a):
    e = x.shape[-1]
    m = torch.nn.MultiheadAttention(e, a["heads"], batch_first=True, bias=a["bias"])
    m.load_state_dict({k: v.detach() for k, v in w.items()})
    mask = torch.triu(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool), 1) if a["causal"] else None
    return m(x, x, x, attn_mask=mask, need_weights=False)[0]


def _upsample(x, w, a):
    if a["mode"] == "nearest":
        return F.interpolate(x, scale_factor=tuple(a["scale"]), mode="nearest")
    return F.interpolate(x, scale_factor=tuple(a["scale"]), mode="bilinear", align_corners=False)


# (label, input declaration, stage, torch function (x, weights, attrs) -> y)
CASES = [
    ("dense", "[512]", "dense(512)", lambda x, w, a: F.linear(x, w["weight"], w["bias"])),
    ("conv2d 3x3", "[32, 32, 32]", "conv2d(32, 3, padding=same)", _conv2d),
    ("conv2d depthwise", "[64, 32, 32]", "conv2d(64, 3, padding=1, groups=64)", _conv2d),
    ("conv2d_transpose", "[32, 16, 16]", "conv2d_transpose(16, 2, stride=2)",
     lambda x, w, a: F.conv_transpose2d(x, w["weight"], w["bias"], 2)),
    ("conv1d", "[32, 256]", "conv1d(32, 5, padding=same)", _conv1d),
    ("upsample2d nearest", "[32, 32, 32]", "upsample2d(2)", _upsample),
    ("upsample2d bilinear", "[32, 32, 32]", "upsample2d(2, mode=bilinear)", _upsample),
    ("maxpool2d", "[32, 32, 32]", "maxpool2d(2)", lambda x, w, a: F.max_pool2d(x, 2)),
    ("maxpool1d", "[32, 256]", "maxpool1d(2)", lambda x, w, a: F.max_pool1d(x, 2)),
    ("batchnorm", "[32, 32, 32]", "batchnorm", lambda x, w, a: F.batch_norm(
        x, w["running_mean"].detach().clone(), w["running_var"].detach().clone(), w["weight"], w["bias"], True, 0.1)),
    ("layernorm", "[128, 128]", "layernorm", lambda x, w, a: F.layer_norm(x, (128,), w["weight"], w["bias"])),
    ("lstm bidirectional", "[32, 64]", "lstm(64, bidirectional=true, return_sequences=true)", _lstm),
    ("multihead_attention", "[128, 128]", "multihead_attention(4)", _mha),
    ("multihead_attention causal", "[128, 128]", "multihead_attention(4, causal=true)", _mha),
    ("batchnorm1d", "[512]", "batchnorm", lambda x, w, a: F.batch_norm(
        x, w["running_mean"].detach().clone(), w["running_var"].detach().clone(), w["weight"], w["bias"], True, 0.1)),
    ("softmax", "[128, 128]", "softmax", lambda x, w, a: F.softmax(x, -1)),
    ("gelu", "[128, 128]", "gelu", lambda x, w, a: F.gelu(x)),
    ("gelu [128, 512]", "[128, 512]", "gelu", lambda x, w, a: F.gelu(x)),
    ("hardswish", "[128, 128]", "hardswish", lambda x, w, a: F.hardswish(x)),
    ("transpose", "[128, 128]", "transpose([1, 0])", lambda x, w, a: x.transpose(1, 2).contiguous()),
    ("mean(0)", "[128, 128]", "mean(0)", lambda x, w, a: x.mean(1)),
]
BATCH = 32


def _medians(fns, repeat: int) -> list[float]:
    """Median seconds of each of ``fns``, timed round-robin (one call of each per round) after one
    warm-up call of each."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def run(label, decl, stage, tfn, repeat):
    program = compile_source(f"model m {{ input x: {decl}\n {stage} }}", "bench.nnspec")
    node = program.model.nodes[0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, *program.model.inputs[0].shape)).astype(np.float32)
    w = {wt.name: (rng.uniform(0.5, 2, wt.shape) if wt.name == "running_var" else
                   0.1 * rng.standard_normal(wt.shape)).astype(np.float32) for wt in node.weights}
    kernel, a = KERNELS[node.op], node.attrs
    ctx = Ctx(training=True)
    y, cache = kernel.forward([x], w, a, ctx)
    r = rng.standard_normal(y.shape).astype(np.float32)

    def nnc_f():
        kernel.forward([x], w, a, ctx)

    def nnc_step():
        _, c = kernel.forward([x], w, a, ctx)
        kernel.backward(r, c)

    tx = torch.from_numpy(x).requires_grad_(True)
    tw = {k: torch.from_numpy(v).requires_grad_(k not in ("running_mean", "running_var")) for k, v in w.items()}
    tr = torch.from_numpy(r)

    def torch_f():
        with torch.no_grad():
            tfn(tx, tw, a)

    def torch_step():
        tx.grad = None
        (tfn(tx, tw, a) * tr).sum().backward()
    nnc_f, torch_f, nnc_fb, torch_fb = _medians([nnc_f, torch_f, nnc_step, torch_step], repeat)
    return label, nnc_f, torch_f, nnc_fb, torch_fb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="")
    ap.add_argument("--threads", type=int, default=2, help="torch threads and NumPy BLAS threads")
    args = ap.parse_args()
    keep_freed_memory()           # as the Trainer does: freed buffers are reused, not page-faulted in again
    torch.set_num_threads(args.threads)
    limit = None
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(limits=args.threads, user_api="blas")
    except ImportError:
        print("threadpoolctl is not installed: NumPy's BLAS keeps its own thread count")
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    print(f"batch {BATCH}, float32, torch {torch.__version__} with {torch.get_num_threads()} threads, NumPy's "
          f"BLAS with {args.threads if limit is not None else 'its default'}; milliseconds (median, round-robin); "
          "ratio = torch / nnc")
    print(f"{'op':<28} {'fwd nnc':>9} {'fwd torch':>10} {'ratio':>6} {'f+b nnc':>9} {'f+b torch':>10} {'ratio':>6}")
    for case in CASES:
        if only and case[0] not in only and case[2].split("(")[0] not in only:
            continue
        label, nf, tf, nb, tb = run(*case, args.repeat)
        print(f"{label:<28} {nf * 1e3:>9.2f} {tf * 1e3:>10.2f} {tf / nf:>6.2f} {nb * 1e3:>9.2f} {tb * 1e3:>10.2f} "
              f"{tb / nb:>6.2f}")


if __name__ == "__main__":
    main()
