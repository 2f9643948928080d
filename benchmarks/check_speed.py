"""Start-up and throughput of `nnc check`.

    .venv/bin/python benchmarks/check_speed.py

1. Whole-process time of `nnc check specs/digits_cnn.nnspec` minus `python -c pass` (median of
   runs), target < 150 ms on a 2-core machine.
2. Time to check a generated 1,000-layer spec (in-process and whole process), target < 0.5 s.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RUNS = 15


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


def median_wall(cmd: list[str], runs: int = RUNS) -> float:
    wall(cmd)  # warm the OS cache and the parser cache
    return statistics.median(wall(cmd) for _ in range(runs))


def big_spec(layers: int = 1000) -> str:
    body = ["model big {", "    input x: [64]"]
    for i in range(layers // 2):
        body.append(f"    dense({32 + i % 32}) -> relu")
    body.append("}")
    return "\n".join(body) + "\n"


def main() -> None:
    nnc = [PY, "-m", "nnc.cli"]
    base = median_wall([PY, "-c", "pass"])
    check = median_wall(nnc + ["check", str(ROOT / "specs" / "digits_cnn.nnspec")])
    print(f"python -c pass:                      {base * 1000:7.1f} ms")
    print(f"nnc check specs/digits_cnn.nnspec:   {check * 1000:7.1f} ms")
    print(f"  start-up over the interpreter:     {(check - base) * 1000:7.1f} ms   (target < 150 ms)")

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "big.nnspec"
        spec.write_text(big_spec())
        whole = median_wall(nnc + ["check", str(spec)], runs=7)
        sys.path.insert(0, str(ROOT))
        from nnc.compiler.lower import check_source
        text = spec.read_text()
        check_source(text, "big.nnspec")  # warm the parser
        times = []
        for _ in range(7):
            t = time.perf_counter()
            program = check_source(text, "big.nnspec")
            times.append(time.perf_counter() - t)
        n = len(program["model"]["nodes"])
    print(f"1,000-layer spec ({n} nodes), in-process check: {statistics.median(times) * 1000:7.1f} ms")
    print(f"1,000-layer spec, whole process:                 {whole * 1000:7.1f} ms   (target < 500 ms)")


if __name__ == "__main__":
    main()
