"""Size and speed of nnc's ONNX export, against `torch.onnx.export` of the same architecture.

    .venv/bin/python benchmarks/onnx_speed.py [--runs-b1 N] [--runs-b256 N]

For every example spec (`specs/*.nnspec`): the node count of nnc's graph (default opset and the
opset torch exports), and, where torch is installed, the node count of `torch.onnx.export` of an
equivalent torch module built from the IR with the same weights (the TorchScript exporter with a
dynamic batch axis; constant folding on). Then onnxruntime latency (median, CPU provider, same
session options for both) at batch 1 and 256 for every spec, and the parity of the two exports with
the NumPy runtime. Numbers are printed, never asserted; torch is only a comparison here.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nnc.onnx import export as E  # noqa: E402
from nnc.onnx import verify as V  # noqa: E402
from nnc.compiler.lower import compile_source  # noqa: E402

TORCH_OPSET = 20   # the newest opset torch's TorchScript exporter writes


# ----------------------------------------------------------------------------------------------
# an equivalent torch module, built from the IR

def torch_module(model, weights):
    import torch
    import torch.nn.functional as F
    from torch import nn

    def t(key):
        return torch.from_numpy(np.ascontiguousarray(weights[key]))

    class FromIR(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleDict()
            for n in model.nodes:
                a, mod = n.attrs, None
                in_shape = model.shape_of(n.inputs[0]) if n.inputs else None
                if n.op == "dense":
                    mod = nn.Linear(in_shape[-1], a["units"], bias=a["bias"])
                elif n.op in ("conv2d", "conv1d"):
                    nd = 2 if n.op == "conv2d" else 1
                    pads = a["pads"]
                    assert pads[:nd] == pads[nd:], "asymmetric padding: not in the examples"
                    cls = nn.Conv2d if nd == 2 else nn.Conv1d
                    mod = cls(in_shape[0], a["filters"], a["kernel"], a["stride"], pads[:nd], a["dilation"],
                              bias=a["bias"])
                elif n.op == "maxpool2d":
                    mod = nn.MaxPool2d(a["size"], a["stride"], a["padding"])
                elif n.op == "avgpool2d":
                    mod = nn.AvgPool2d(a["size"], a["stride"], a["padding"], count_include_pad=True)
                elif n.op == "batchnorm":
                    cls = nn.BatchNorm2d if len(in_shape) == 3 else nn.BatchNorm1d
                    mod = cls(in_shape[0], eps=a["eps"], momentum=1 - a["momentum"])
                elif n.op == "layernorm":
                    mod = nn.LayerNorm(in_shape[-1], eps=a["eps"])
                elif n.op == "embedding":
                    mod = nn.Embedding(a["vocab"], a["dim"])
                elif n.op in ("rnn", "lstm", "gru"):
                    kw = {"nonlinearity": a["activation"]} if n.op == "rnn" else {}
                    cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[n.op]
                    mod = cls(in_shape[1], a["units"], batch_first=True, num_layers=a["layers"],
                              bidirectional=a["bidirectional"], dropout=a["dropout"], **kw)
                elif n.op == "dropout":
                    mod = nn.Dropout(a["rate"])
                if mod is not None:
                    self.layers[n.id] = mod
            with torch.no_grad():
                for n in model.nodes:
                    if n.id not in self.layers:
                        continue
                    mod = self.layers[n.id]
                    for w in n.weights:
                        # one forward recurrent layer keeps the names without torch's `_l0`
                        simple = n.op in ("rnn", "lstm", "gru") and n.attrs["suffixes"] == [[""]]
                        name = f"{w.name}_l0" if simple else w.name
                        getattr(mod, name).copy_(t(f"{n.id}.{w.name}"))
            self.eval()

        def forward(self, *xs):
            values = dict(zip([i.name for i in model.inputs], xs))
            for n in model.nodes:
                x = [values[s] for s in n.inputs]
                a, op = n.attrs, n.op
                if n.id in self.layers and op not in ("rnn", "lstm", "gru"):
                    y = self.layers[n.id](x[0])
                elif op in ("rnn", "lstm", "gru"):
                    seq, h = self.layers[n.id](x[0])
                    if op == "lstm":
                        h = h[0]
                    d = 2 if a["bidirectional"] else 1
                    y = seq if a["return_sequences"] else torch.cat(list(h[-d:]), dim=-1)
                elif op == "globalavgpool2d":
                    y = x[0].mean(dim=(2, 3))
                elif op == "flatten":
                    y = torch.flatten(x[0], 1)
                elif op == "reshape":
                    y = x[0].reshape(x[0].shape[0], *a["shape"])
                elif op == "add":
                    y = x[0]
                    for o in x[1:]:
                        y = y + o
                elif op == "multiply":
                    y = x[0]
                    for o in x[1:]:
                        y = y * o
                elif op == "concat":
                    y = torch.cat(x, dim=a["axis"] + 1)
                elif op in ("identity", "linear"):
                    y = x[0]
                elif op in ("softmax", "log_softmax"):
                    y = getattr(F, op)(x[0], dim=a["axis"] + 1)
                elif op == "leaky_relu":
                    y = F.leaky_relu(x[0], a["alpha"])
                elif op == "elu":
                    y = F.elu(x[0], a["alpha"])
                elif op == "step":
                    y = (x[0] > 0).to(x[0].dtype)
                else:
                    y = getattr(F, op)(x[0])
                values[n.id] = y
            return tuple(values[o.source] for o in model.outputs)

    return FromIR()


def torch_export(program, weights):
    import torch
    model = program.model
    module = torch_module(model, weights)
    inputs = V.random_inputs(model, 2)
    args = tuple(torch.from_numpy(inputs[i.name]) for i in model.inputs)
    in_names = [i.name for i in model.inputs]
    out_names = [o.name for o in model.outputs]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, dynamo=False, input_names=in_names, output_names=out_names,
                          dynamic_axes={n: {0: "N"} for n in in_names + out_names}, opset_version=TORCH_OPSET)
    return onnx.load_from_string(buf.getvalue())


# ----------------------------------------------------------------------------------------------
# timing

def session(proto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def latencies(sessions, inputs, runs: int, rounds: int = 5) -> list[float]:
    """Median seconds per `run` of each session, measured in alternating rounds (so that load from
    other processes falls on all of them alike), after a warm-up."""
    times: list[list[float]] = [[] for _ in sessions]
    for sess in sessions:
        for _ in range(max(3, runs // 20)):
            sess.run(None, inputs)
    for _ in range(rounds):
        for sess, ts in zip(sessions, times):
            for _ in range(max(1, runs // rounds)):
                t = time.perf_counter()
                sess.run(None, inputs)
                ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def max_diff(sess, program, weights, batch=16) -> float:
    inputs = V.random_inputs(program.model, batch, seed=3)
    want = V.reference_outputs(program, weights, inputs)
    got = sess.run([o.name for o in program.model.outputs], inputs)
    return max(float(np.max(np.abs(g - want[o.name]))) for g, o in zip(got, program.model.outputs))


def fmt_us(s: float) -> str:
    return f"{s * 1e6:,.0f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs-b1", type=int, default=1000)
    p.add_argument("--runs-b256", type=int, default=200)
    args = p.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(1)
        have_torch = True
    except ImportError:
        have_torch = False
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, default opset {E.max_supported_opset()}, "
          f"torch {torch.__version__ if have_torch else 'not installed'}; latencies are medians in µs\n")
    rows = []
    for spec in sorted((ROOT / "specs").glob("*.nnspec")):
        program = compile_source(spec.read_text(encoding="utf-8"), str(spec))
        weights = E.resolve_weights(program, None)
        ours = E.build(program, weights)
        ours_t = E.build(program, weights, opset=TORCH_OPSET)
        row = {"spec": spec.stem, "nodes": ours.node_count, f"nodes@{TORCH_OPSET}": ours_t.node_count}
        s_ours = session(ours.proto)
        row["diff"] = max_diff(s_ours, program, weights)
        theirs = None
        if have_torch:
            try:
                theirs = torch_export(program, weights)
                row["torch nodes"] = len(theirs.graph.node)
                s_theirs = session(theirs)
                row["torch diff"] = max_diff(s_theirs, program, weights)
            except Exception as exc:  # noqa: BLE001 - report, keep measuring
                row["torch nodes"] = f"failed: {type(exc).__name__}"
                theirs = None
        for batch, runs in ((1, args.runs_b1), (256, args.runs_b256)):
            inputs = V.random_inputs(program.model, batch, seed=batch)
            got = latencies([s_ours] + ([s_theirs] if theirs is not None else []), inputs, runs)
            row[f"b{batch}"] = got[0]
            if theirs is not None:
                row[f"torch b{batch}"] = got[1]
        rows.append(row)

    cols = ["spec", "nodes", f"nodes@{TORCH_OPSET}", "torch nodes", "b1", "torch b1", "b1 ratio",
            "b256", "torch b256", "b256 ratio", "diff", "torch diff"]
    table = []
    for r in rows:
        cells = {"spec": r["spec"], "nodes": str(r["nodes"]), f"nodes@{TORCH_OPSET}": str(r[f"nodes@{TORCH_OPSET}"]),
                 "torch nodes": str(r.get("torch nodes", "-")), "diff": f"{r['diff']:.1e}",
                 "torch diff": f"{r['torch diff']:.1e}" if "torch diff" in r else "-"}
        for b in ("b1", "b256"):
            cells[b] = fmt_us(r[b])
            cells[f"torch {b}"] = fmt_us(r[f"torch {b}"]) if f"torch {b}" in r else "-"
            cells[f"{b} ratio"] = f"{r[b] / r[f'torch {b}']:.2f}" if f"torch {b}" in r else "-"
        table.append([cells[c] for c in cols])
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    print(f"\nnodes: nnc at the default opset; nodes@{TORCH_OPSET}: nnc at the opset torch exports; "
          "ratio = nnc / torch latency (< 1: nnc faster); diff = max |onnxruntime - NumPy runtime| at batch 16.")


if __name__ == "__main__":
    main()
