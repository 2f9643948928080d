"""Start-up and throughput of `nnc check` (issue 13's checker rows), ratios measured in one run.

    .venv/bin/python benchmarks/check_speed.py [--runs N]

Prints one table:

1. Whole-process time of `nnc check specs/digits_cnn.nnspec` against `python -c pass` (medians of
   alternating runs; goal <= 3x), two ways: with byte-code caches (`.pyc`: what a pip install and
   `make setup` leave; here written into a temporary PYTHONPYCACHEPREFIX by a first run) and without
   (a copy of the package without `__pycache__`, run with PYTHONDONTWRITEBYTECODE=1: a source tree
   that was never byte-compiled, where every process compiles every nnc module from source).
2. A generated 1,000-layer spec, in-process and whole process (target < 0.5 s).
3. A spec just under the 1 MiB limit (about 94,000 layers; goal <= 2 s), in-process (the best of
   three), split into parsing and lowering (`--profile` adds the cProfile top of the whole check).
4. The robustness tests' garbage corpus (each input; none may take long). These were wall-clock
   assertions in tests/test_robustness.py once; speed belongs here, never in a test.

Rows 1 and 3 also give CPU time (user + system), steadier than wall time on a loaded machine.

The parser's table cache (NNC_CACHE_DIR or <tmp>/nnc-cache) is warmed by the first run of each row.
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def wall(cmd: list[str], env: dict, cwd: Path = ROOT) -> float:
    return timed(cmd, env, cwd)[0]


def timed(cmd: list[str], env: dict, cwd: Path = ROOT) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env, cwd=cwd)
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_wall(cmd: list[str], env: dict, runs: int) -> float:
    wall(cmd, env)  # warm the OS cache, the parser's table cache and (pyc mode) the byte code
    return statistics.median(wall(cmd, env) for _ in range(runs))


def paired_walls(a: list[str], b: list[str], env: dict, runs: int,
                 cwd: Path = ROOT) -> tuple[float, float, float, float]:
    """Medians of ``a`` and ``b`` run alternately, so that both see the same load (the ratio is
    what the goal is about): wall time of each, then CPU time of each (steadier on a loaded machine)."""
    wall(a, env, cwd), wall(b, env, cwd)  # warm up
    ta, tb = [], []
    for _ in range(runs):
        ta.append(timed(a, env, cwd))
        tb.append(timed(b, env, cwd))
    return (statistics.median(t[0] for t in ta), statistics.median(t[0] for t in tb),
            statistics.median(t[1] for t in ta), statistics.median(t[1] for t in tb))


def big_spec(layers: int = 1000) -> str:
    body = ["model big {", "    input x: [64]"]
    for i in range(layers // 2):
        body.append(f"    dense({32 + i % 32}) -> relu")
    body.append("}")
    return "\n".join(body) + "\n"


def near_limit_spec() -> bytes:
    line = b"dense(3) -> relu\n"
    return b"model big {\n    input x: [3]\n" + line * (800_000 // len(line)) + b"}\n"


def row(name: str, value: str, ratio: str = "", goal: str = "") -> None:
    print(f"| {name:<58} | {value:>10} | {ratio:>7} | {goal:<10} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="runs per whole-process median")
    ap.add_argument("--profile", action="store_true", help="cProfile the 800 KB check")
    opts = ap.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    nnc = [PY, "-m", "nnc.cli"]
    small = str(ROOT / "specs" / "digits_cnn.nnspec")

    print("| measurement" + " " * 48 + "|      value |   ratio | goal       |")
    print("|" + "-" * 60 + "|-----------:|--------:|------------|")
    with tempfile.TemporaryDirectory() as pyc, tempfile.TemporaryDirectory() as bare:
        plain = {k: v for k, v in env.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
        shutil.copytree(ROOT / "nnc", Path(bare) / "nnc", ignore=shutil.ignore_patterns("__pycache__"))
        # (run in the copy's folder: `python -m` puts the working directory first on sys.path)
        modes = [("with .pyc", {**plain, "PYTHONPYCACHEPREFIX": pyc}, ROOT),
                 ("no .pyc", {**plain, "PYTHONDONTWRITEBYTECODE": "1",
                              "PYTHONPATH": os.pathsep.join([bare, env["PYTHONPATH"]])}, Path(bare))]
        where = subprocess.run([PY, "-c", "import nnc.cli, sys; print(nnc.cli.__file__, nnc.cli.__cached__)"],
                               env=modes[1][1], cwd=bare, capture_output=True, text=True).stdout
        assert where.startswith(bare), f"the no-.pyc row would import {where}"  # the copy, not the tree
        for label, menv, cwd in modes:
            base, check, base_cpu, check_cpu = paired_walls([PY, "-c", "pass"], nnc + ["check", small], menv,
                                                            opts.runs, cwd)
            row(f"python -c pass, {label}", f"{base * 1000:.1f} ms")
            row(f"nnc check digits_cnn.nnspec, {label}", f"{check * 1000:.1f} ms", f"{check / base:.2f}x", "<= 3x")
            row("  the same in CPU time (user + system)", f"{check_cpu * 1000:.1f} ms", f"{check_cpu / base_cpu:.2f}x")

        with tempfile.TemporaryDirectory() as tmp:
            spec = Path(tmp) / "big.nnspec"
            spec.write_text(big_spec())
            whole = median_wall(nnc + ["check", str(spec)], modes[0][1], max(3, opts.runs // 2))
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
    row(f"1,000-layer spec ({n} nodes), in-process check", f"{statistics.median(times) * 1000:.1f} ms")
    row("1,000-layer spec, whole process (with .pyc)", f"{whole * 1000:.1f} ms", "", "< 500 ms")

    from nnc.compiler.lower import Lowerer
    from nnc.compiler.parse import parse
    near = near_limit_spec()
    totals, cpus = [], []
    for _ in range(3):  # the best of three: the machine's load only ever adds time
        program = None
        gc.collect()
        t, c = time.perf_counter(), time.process_time()
        program = check_source(near, "big.nnspec")
        totals.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    total = min(totals)
    gc.disable()
    try:
        t = time.perf_counter()
        file = parse(near, "big.nnspec")
        parsed = time.perf_counter() - t
        Lowerer("big.nnspec").lower(file, None).to_dict()
        lowered = time.perf_counter() - t - parsed
    finally:
        gc.enable()
    nodes = len(program["model"]["nodes"])
    row(f"800 KB spec ({nodes:,} nodes), in-process check", f"{total:.2f} s", "", "<= 2 s")
    row("  the same in CPU time", f"{min(cpus):.2f} s")
    row("  of which parsing (lexer, LALR, syntax tree)", f"{parsed:.2f} s")
    row("  of which lowering (IR, shapes, to_dict)", f"{lowered:.2f} s")
    if opts.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.runcall(check_source, near, "big.nnspec")
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)

    sys.path.insert(0, str(ROOT / "tests"))
    from test_robustness import GARBAGE  # the corpus the robustness tests feed the checker
    from nnc.errors import NncError
    # NOTE: the rows above leave a million objects to collect: without this, the corpus row pays
    # for the cyclic collector's passes over them (about +0.7 s on the 1 MB line)
    gc.collect()
    slowest = (0.0, "")
    t0 = time.perf_counter()
    for name, source in GARBAGE.items():
        t = time.perf_counter()
        try:
            check_source(source, "garbage.nnspec")
        except NncError:
            pass
        slowest = max(slowest, (time.perf_counter() - t, name))
    row(f"garbage corpus ({len(GARBAGE)} inputs), in all", f"{time.perf_counter() - t0:.2f} s")
    row(f"  slowest: {slowest[1]}", f"{slowest[0]:.2f} s")


if __name__ == "__main__":
    main()
