"""Inference speed of nnc's ONNX export in onnxruntime, against `torch.onnx.export` of the same model.

    python benchmarks/onnx_speed.py                       # every example spec and every zoo model
    python benchmarks/onnx_speed.py --examples            # specs/*.nnspec only
    python benchmarks/onnx_speed.py --zoo --budget 20     # specs/zoo/*.nnspec, 20 s per model
    python benchmarks/onnx_speed.py --specs digits_mlp,resnet18 --threads 1 --ops

For each spec: nnc's graph (`nnc.onnx.export.build`, the default opset, seeded weights) and the
torch twin's: the module `nnc compile --emit torch` writes (PyTorch's own layers, nested as the
spec's layer names), loaded with the same weights, in eval mode, exported by `torch.onnx.export`
(the TorchScript exporter, opset 20, constant folding on, dynamic batch axis). Both run in
onnxruntime's CPU provider with the same session options: default graph optimisations,
`--threads` intra-op threads (default 2), one inter-op thread, sequential execution.

Timing, per batch size (1 and 256): one warm-up run of each session, then single runs taking
turns (nnc, torch, torch, nnc, nnc, torch, ...: the order flips every round) until the model's share of `--budget` seconds is spent (at
least `--min-pairs` pairs); each side's time is the median of its runs. Because the two sessions
alternate, a load swing of the machine falls on both alike: trust the ratio, not the
microseconds. `--clock cpu` measures the process' CPU time instead of wall time (steadier when
other processes share the cores; the threads are then told not to spin, so that idle waiting is
not counted as work; best with `--threads 1`).

Columns: nodes (ONNX graph nodes, before onnxruntime's optimisations), latency per batch in µs,
and `torch/nnc` = torch's latency / nnc's (>= 1: nnc's graph is at least as fast), then the largest
difference of each export from the NumPy runtime (batch 4). `--ops` also prints both graphs' op
types, before and after onnxruntime's optimisations. Numbers are printed, never asserted.
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nnc.compiler.lower import compile_source  # noqa: E402
from nnc.onnx import export as E  # noqa: E402
from nnc.onnx import verify as V  # noqa: E402

TORCH_OPSET = 20   # the newest opset torch's TorchScript exporter writes
BATCHES = (1, 256)


# ----------------------------------------------------------------------------------------------
# the torch twin: the module `nnc compile --emit torch` writes

def torch_export(program, weights) -> onnx.ModelProto:
    """torch.onnx's export of the torch twin: the standalone module `nnc compile --emit torch`
    writes for ``program``'s model, with ``weights``, in eval mode."""
    import torch
    from nnc.torch.emit import emit_torch, load_module
    model = program.model
    module = load_module(program, emit_torch(program), weights)
    inputs = V.random_inputs(model, 2)
    args = tuple(torch.from_numpy(inputs[i.name]) for i in model.inputs)
    in_names = [i.name for i in model.inputs]
    out_names = [o.name for o in model.outputs]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(tmp, "torch.onnx")
        # NOTE: not under no_grad: there nn.MultiheadAttention takes its fused fast path, an aten op
        # that the exporter cannot write
        torch.onnx.export(module, args, path, dynamo=False, input_names=in_names, output_names=out_names,
                          dynamic_axes={n: {0: "N"} for n in in_names + out_names},
                          opset_version=TORCH_OPSET, do_constant_folding=True)
        return onnx.load(path)


# ----------------------------------------------------------------------------------------------
# sessions and timing

def session(proto: onnx.ModelProto, threads: int, optimized: str | None = None, spin: bool = True) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized:
        opts.optimized_model_filepath = optimized
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def interleaved(sessions, inputs, budget: float, min_pairs: int, clock=time.perf_counter) -> tuple[list[float], int]:
    """Median seconds per run of each session (by ``clock``) and the number of rounds: one warm-up
    run each, then rounds of one run per session in turn, until ``budget`` seconds of wall time
    are spent (at least ``min_pairs`` rounds). Every other round runs them in reverse order (A B,
    B A, A B, ...): the session that runs second finds the caches warmer, and two sessions of one
    graph in a fixed order differ by up to 1% for that alone."""
    for sess in sessions:
        sess.run(None, inputs)
    times: list[list[float]] = [[] for _ in sessions]
    start = time.perf_counter()
    rounds = 0
    orders = (list(zip(sessions, times)), list(zip(sessions, times))[::-1])
    while rounds < min_pairs or time.perf_counter() - start < budget:
        for sess, ts in orders[rounds % 2]:
            t = clock()
            sess.run(None, inputs)
            ts.append(clock() - t)
        rounds += 1
    return [statistics.median(ts) for ts in times], rounds


def max_diff(sess, program, weights, batch: int = 4) -> float:
    inputs = V.random_inputs(program.model, batch, seed=3)
    want = V.reference_outputs(program, weights, inputs)
    got = sess.run([o.name for o in program.model.outputs], inputs)
    return max(float(np.max(np.abs(g - want[o.name]))) for g, o in zip(got, program.model.outputs))


def op_counts(proto: onnx.ModelProto) -> str:
    counts = collections.Counter(n.op_type for n in proto.graph.node)
    return ", ".join(f"{op} {k}" if k > 1 else op for op, k in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def optimized_ops(proto: onnx.ModelProto, threads: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "opt.onnx")
        session(proto, threads, optimized=path)
        return op_counts(onnx.load(path, load_external_data=False))


# ----------------------------------------------------------------------------------------------
# specs

def find_specs(args) -> list[Path]:
    examples = sorted((ROOT / "specs").glob("*.nnspec"))
    zoo = sorted((ROOT / "specs" / "zoo").glob("*.nnspec"))
    if args.specs:
        by_name = {p.stem: p for p in examples + zoo}
        chosen = []
        for item in args.specs.split(","):
            item = item.strip()
            path = Path(item)
            if item in by_name:
                chosen.append(by_name[item])
            elif path.is_file():
                chosen.append(path.resolve())
            else:
                raise SystemExit(f"no spec `{item}`: give a file or one of {', '.join(sorted(by_name))}")
        return chosen
    if not args.examples and not args.zoo:
        return examples + zoo
    return (examples if args.examples else []) + (zoo if args.zoo else [])


def fmt_us(s: float) -> str:
    return f"{s * 1e6:,.0f}"


def print_table(rows: list[dict]) -> None:
    cols = ["spec", "nodes nnc", "nodes torch"]
    for b in BATCHES:
        cols += [f"b{b} nnc µs", f"b{b} torch µs", f"b{b} torch/nnc"]
    cols += ["runs", "diff nnc", "diff torch"]
    table = []
    for r in rows:
        cells = [r["spec"], str(r["nodes"]), str(r.get("torch nodes", "-"))]
        for b in BATCHES:
            ours, theirs = r.get(f"nnc b{b}"), r.get(f"torch b{b}")
            cells += [fmt_us(ours) if ours else "-", fmt_us(theirs) if theirs else "-",
                      f"{theirs / ours:.2f}" if ours and theirs else "-"]
        cells += ["/".join(str(r.get(f"rounds b{b}", "-")) for b in BATCHES), f"{r['diff']:.1e}",
                  f"{r['torch diff']:.1e}" if "torch diff" in r else "-"]
        table.append(cells)
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths))))
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", action="store_true", help="the example specs (specs/*.nnspec)")
    p.add_argument("--zoo", action="store_true", help="the zoo models (specs/zoo/*.nnspec)")
    p.add_argument("--specs", help="comma-separated spec names (stems) or paths")
    p.add_argument("--budget", type=float, default=6.0, help="seconds of timing per model, both batch sizes")
    p.add_argument("--min-pairs", type=int, default=3, help="at least this many nnc/torch rounds per batch size")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads, both sessions")
    p.add_argument("--no-spin", action="store_true",
                   help="onnxruntime's intra-op threads sleep at once instead of spinning after each op")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: latency (time.perf_counter); cpu: the process' CPU time (time.process_time), "
                        "steadier on a loaded machine; with it the threads never spin, so that it counts work")
    p.add_argument("--opset", type=int, default=None, help="nnc's opset (default: the newest supported)")
    p.add_argument("--ops", action="store_true", help="print both graphs' op types (raw and optimised)")
    args = p.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(args.threads)
        have_torch = True
    except ImportError:
        have_torch = False
    specs = find_specs(args)
    spin = not args.no_spin and args.clock == "wall"
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, nnc opset {args.opset or E.max_supported_opset()}, "
          f"torch {torch.__version__ + f' (opset {TORCH_OPSET})' if have_torch else 'not installed'}; "
          f"{args.threads} intra-op thread(s){'' if spin else ', no spinning'}; "
          f"{args.budget:g} s per model; {'CPU times' if args.clock == 'cpu' else 'latencies'} are medians\n", flush=True)
    rows = []
    for spec in specs:
        program = compile_source(spec.read_text(encoding="utf-8"), str(spec))
        weights = E.resolve_weights(program, None)
        exp = E.build(program, weights, opset=args.opset)
        ours = exp.proto
        row = {"spec": spec.stem, "nodes": exp.node_count}
        s_ours = session(ours, args.threads, spin=spin)
        row["diff"] = max_diff(s_ours, program, weights)
        s_theirs = theirs = None
        if have_torch:
            try:
                theirs = torch_export(program, weights)
                row["torch nodes"] = len(theirs.graph.node)
                s_theirs = session(theirs, args.threads, spin=spin)
                row["torch diff"] = max_diff(s_theirs, program, weights)
            except Exception as exc:  # noqa: BLE001 - report, keep measuring
                row["torch nodes"] = "failed"
                print(f"{spec.stem}: torch.onnx.export failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                s_theirs = theirs = None
        if args.ops:
            print(f"{spec.stem}\n  nnc   {op_counts(ours)}\n        optimised: {optimized_ops(ours, args.threads)}")
            if theirs is not None:
                print(f"  torch {op_counts(theirs)}\n        optimised: {optimized_ops(theirs, args.threads)}")
        sessions = [s_ours] + ([s_theirs] if s_theirs is not None else [])
        for batch in BATCHES:
            inputs = V.random_inputs(program.model, batch, seed=batch)
            got, rounds = interleaved(sessions, inputs, args.budget / len(BATCHES), args.min_pairs, clock)
            row[f"nnc b{batch}"] = got[0]
            row[f"rounds b{batch}"] = rounds
            if s_theirs is not None:
                row[f"torch b{batch}"] = got[1]
        rows.append(row)
        line = f"{spec.stem}: " + ", ".join(
            f"b{b} {fmt_us(row[f'nnc b{b}'])} / {fmt_us(row[f'torch b{b}'])} µs" if f"torch b{b}" in row
            else f"b{b} {fmt_us(row[f'nnc b{b}'])} µs" for b in BATCHES)
        print(line, file=sys.stderr, flush=True)
        del s_ours, s_theirs, sessions, exp, ours, theirs
    print()
    print_table(rows)
    print(f"\nnodes: ONNX nodes before onnxruntime's optimisations; µs: median {args.clock} time per run; "
          "torch/nnc = torch's time / nnc's "
          "(>= 1: nnc's graph is at least as fast); runs = nnc/torch rounds at batch 1 / 256; "
          "diff = max |onnxruntime - NumPy runtime| at batch 4.")


if __name__ == "__main__":
    main()
