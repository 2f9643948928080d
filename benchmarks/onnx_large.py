"""Export models over protobuf's 2 GiB limit (ONNX external data) as a user does, and check the result.

    python benchmarks/onnx_large.py                  # the three cases below
    python benchmarks/onnx_large.py --case layers    # one of them
    python benchmarks/onnx_large.py --keep DIR       # leave the files in DIR

Cases (float32 weights, nnc's seeded initialisation, the default threshold):

- ``layers``: three dense layers, 541M parameters (2.02 GiB): ``<name>.onnx`` + ``<name>.onnx.data``;
- ``single``: one dense layer whose weight alone is 2.01 GiB (one tensor over the limit);
- ``under``: 1.9 GiB of weights, just under the threshold: one self-contained file.

Each case runs ``nnc compile SPEC -o OUT`` in a subprocess (verification included: checker and
shape inference on the path, onnxruntime against the NumPy runtime), then checks the files: sizes,
the relative data location, ``onnx.checker`` on the path, and onnxruntime after the pair has been
moved to another directory. Prints wall time and peak memory of the export. Needs about 7 GB of RAM
and 3x the model size of free disk.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "layers": "input x: [8192]\n    dense(16384) -> relu -> dense(16384) -> relu -> dense(8448)",
    "single": "input x: [16384]\n    dense(33000)",
    "under": "input x: [8192]\n    dense(16384) -> relu -> dense(16384) -> relu -> dense(7000)",
}


def child_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024      # Linux: KiB


def run_case(name: str, body: str, work: Path) -> dict:
    import onnx
    import onnxruntime as ort

    folder = work / name
    folder.mkdir()
    spec = folder / f"{name}.nnspec"
    spec.write_text(f"model {name} {{\n    {body}\n}}\n")
    out = folder / f"{name}.onnx"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "nnc.cli", "compile", str(spec), "-o", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if r.returncode != 0 or "Traceback" in r.stderr:
        raise SystemExit(f"{name}: nnc compile failed ({r.returncode}):\n{r.stderr}")
    data = out.with_name(out.name + ".data")
    files = sorted(p.name for p in folder.iterdir())
    external = data.exists()
    model = onnx.load(str(out), load_external_data=False)
    locations = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    if external:
        assert locations == {data.name}, locations
        assert data.stat().st_size > 2**31 - 1 or name != "layers"
    else:
        assert not locations and files == [spec.name, out.name], files
    onnx.checker.check_model(str(out), full_check=True)
    moved = work / f"{name}-moved"
    moved.mkdir()
    for f in (out, data) if external else (out,):
        shutil.move(str(f), str(moved / f.name))
    x = np.random.default_rng(0).standard_normal((3, int(body.split("[")[1].split("]")[0]))).astype(np.float32)
    sess = ort.InferenceSession(str(moved / out.name), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x})[0]
    assert np.isfinite(y).all()
    return {"case": name, "seconds": seconds, "peak_rss_mb": child_peak_rss_mb(),
            "onnx_bytes": (moved / out.name).stat().st_size,
            "data_bytes": (moved / data.name).stat().st_size if external else 0,
            "report": r.stderr.strip().splitlines()[-1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=sorted(CASES), action="append")
    ap.add_argument("--keep", type=Path, help="write into this directory and keep the files")
    args = ap.parse_args(argv)
    names = args.case or list(CASES)
    work = args.keep or Path(tempfile.mkdtemp(prefix="nnc-onnx-large-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for name in names:
            res = run_case(name, CASES[name], work)
            print(f"{res['case']:7s} {res['seconds']:6.1f} s  peak RSS {res['peak_rss_mb'] / 1024:5.1f} GiB "
                  f"(max so far)  .onnx {res['onnx_bytes']:,} B  .data {res['data_bytes'] / 2**30:.2f} GiB",
                  flush=True)
            print(f"        {res['report']}", flush=True)
            if not args.keep:
                for sub in (work / name, work / f"{name}-moved"):
                    shutil.rmtree(sub, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
