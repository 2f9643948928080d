"""The data tasks of docs/training.md ("Data a user brings"): accuracy reached and seconds per epoch.

    .venv/bin/python benchmarks/data_tasks.py [--seeds 0,1,2]

Trains, with `nnc train SPEC --set seed=S` for each seed:

  breast cancer, raw       specs/breast_cancer_mlp.nnspec without its `normalize` line
  breast cancer, by hand   the same, on a copy of the CSV z-scored with the training rows' statistics
  breast cancer, normalize specs/breast_cancer_mlp.nnspec as shipped
  text                     specs/review_sentiment.nnspec (the best epoch: restore_best)
  images                   specs/glyphs_cnn.nnspec (its folder is generated first when missing)

and prints each task's validation accuracy per seed (of the weights the run hands over) and the
median of the history's `seconds` column (training time per epoch). The variants are written to a
temporary folder; nothing in specs/ changes. The load average is printed first: other processes
slow the epochs down, so compare the rows of one run, not times across machines.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"


def _train(spec: Path, out: Path, seed: int, best: bool) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-m", "nnc.cli", "train", str(spec), "--out", str(out), "--overwrite", "--quiet",
                    "--set", f"seed={seed}"], check=True, env=env, capture_output=True)
    rows = list(csv.DictReader((out / "history.csv").open()))
    row = min(rows, key=lambda r: float(r["val_loss"])) if best else rows[-1]
    return float(row["val_accuracy"]), statistics.median(float(r["seconds"]) for r in rows)


def _variants(tmp: Path) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT))
    from nnc.data import split_indices

    text = (SPECS / "breast_cancer_mlp.nnspec").read_text()
    source = SPECS / "data" / "breast_cancer.csv"
    lines = source.read_text().splitlines()
    x = np.array([[float(v) for v in line.split(",")[:-1]] for line in lines[1:]])
    rows = split_indices(len(x), 0.2, 0)[1]             # the spec's validation = 0.2 at seed 0
    z = (x - x[rows].mean(0)) / x[rows].std(0)
    with (tmp / "scaled.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(lines[0].split(","))
        w.writerows([repr(float(v)) for v in r] + [line.split(",")[-1]] for r, line in zip(z, lines[1:]))
    raw = "\n".join(line for line in text.splitlines() if not line.strip().startswith("normalize"))
    (tmp / "raw.nnspec").write_text(raw.replace('"data/breast_cancer.csv"', f'"{source}"'))
    (tmp / "hand.nnspec").write_text(raw.replace('"data/breast_cancer.csv"', f'"{tmp / "scaled.csv"}"'))
    return {"raw": tmp / "raw.nnspec", "hand": tmp / "hand.nnspec"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    seeds = [int(s) for s in p.parse_args().seeds.split(",")]
    print(f"load average: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    if not (SPECS / "data" / "glyphs").is_dir():
        subprocess.run([sys.executable, str(SPECS / "data" / "make_glyphs.py")], check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        v = _variants(tmp)
        tasks = [("breast cancer, raw CSV, no normalize", v["raw"], False),
                 ("breast cancer, CSV z-scored by hand", v["hand"], False),
                 ("breast cancer, raw CSV + normalize", SPECS / "breast_cancer_mlp.nnspec", False),
                 ("text: review_sentiment (best epoch)", SPECS / "review_sentiment.nnspec", True),
                 ("images: glyphs_cnn", SPECS / "glyphs_cnn.nnspec", False)]
        print(f"{'task':40s}  {'val_accuracy per seed':30s}  s/epoch (median per seed)")
        for label, spec, best in tasks:
            results = [_train(spec, tmp / f"run-{seed}", seed, best) for seed in seeds]
            accs = " / ".join(f"{a:.2%}" for a, _ in results)
            secs = " / ".join(f"{s:.3f}" for _, s in results)
            print(f"{label:40s}  {accs:30s}  {secs}")


if __name__ == "__main__":
    main()
