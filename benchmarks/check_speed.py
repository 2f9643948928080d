"""Start-up and throughput of `nnc check`.

    .venv/bin/python benchmarks/check_speed.py

1. Whole-process time of `nnc check specs/digits_cnn.nnspec` minus `python -c pass` (median of
   runs), target < 150 ms on a 2-core machine.
2. Time to check a generated 1,000-layer spec (in-process and whole process), target < 0.5 s.
3. Time to check a spec just under the 1 MiB limit (about 94,000 layers; goal <= 2 s) and the
   robustness tests' garbage corpus (each input; none may take long). These were wall-clock
   assertions in tests/test_robustness.py once; speed belongs here, never in a test.
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

    line = b"dense(3) -> relu\n"
    near_limit = b"model big {\n    input x: [3]\n" + line * (800_000 // len(line)) + b"}\n"
    t = time.perf_counter()
    program = check_source(near_limit, "big.nnspec")
    print(f"800 KB spec ({len(program['model']['nodes']):,} nodes), in-process check: "
          f"{time.perf_counter() - t:7.2f} s    (goal <= 2 s)")

    sys.path.insert(0, str(ROOT / "tests"))
    from test_robustness import GARBAGE  # the corpus the robustness tests feed the checker
    from nnc.errors import NncError
    slowest = (0.0, "")
    total = time.perf_counter()
    for name, source in GARBAGE.items():
        t = time.perf_counter()
        try:
            check_source(source, "garbage.nnspec")
        except NncError:
            pass
        slowest = max(slowest, (time.perf_counter() - t, name))
    print(f"garbage corpus ({len(GARBAGE)} inputs): {time.perf_counter() - total:7.2f} s in all, "
          f"slowest {slowest[0]:.2f} s ({slowest[1]})")


if __name__ == "__main__":
    main()
