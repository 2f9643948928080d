"""``nnc graph SPEC [-o FILE]``: the network as DOT text (standard output or ``.dot``/``.gv``), or
drawn by Graphviz's ``dot`` (``.svg``, ``.png``, ``.pdf``) when it is installed."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..compiler.dot import to_dot
from ..errors import NncError
from ..util import atomic_write_text, atomic_write_with

TEXT_FORMATS = (".dot", ".gv")
DRAWN_FORMATS = (".svg", ".png", ".pdf")
DOT_TIMEOUT = 600  # seconds: a hang guard for Graphviz on a huge graph
INSTALL_HINT = ("install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; "
                "conda: conda install graphviz), or write DOT text: -o net.dot")


def render(dot_text: str, fmt: str) -> bytes:
    """``dot_text`` drawn by Graphviz's ``dot`` as ``fmt`` (svg, png, pdf): E901 when ``dot`` is not
    on PATH, E902 when it fails."""
    exe = shutil.which("dot")
    if exe is None:
        raise NncError.single("E901", f"drawing .{fmt} needs Graphviz's `dot` program, which is not on PATH",
                              hint=INSTALL_HINT)
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True,
                              timeout=DOT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise NncError.single("E902", f"Graphviz's `dot` did not finish within {DOT_TIMEOUT} s",
                              hint="write DOT text instead (-o net.dot) and draw it with another layout") from None
    except OSError as exc:
        raise NncError.single("E902", f"cannot run Graphviz's `dot` ({exe}): {exc.strerror or exc}",
                              hint=INSTALL_HINT) from None
    if done.returncode != 0 or not done.stdout:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise NncError.single("E902", f"Graphviz's `dot` failed (exit code {done.returncode})"
                              + (f": {said[0]}" if said else ""),
                              hint="check the Graphviz installation (`dot -V`); -o net.dot writes the DOT text")
    return done.stdout


def graph_command(program, args) -> int:
    dot_text = to_dot(program.model)
    out = args.output
    if not out or out == "-":
        sys.stdout.write(dot_text)
        return 0
    suffix = Path(out).suffix.lower()
    if suffix in TEXT_FORMATS:
        atomic_write_text(out, dot_text, code="E903")
    else:
        data = render(dot_text, suffix[1:])
        atomic_write_with(out, lambda fh: fh.write(data), code="E903")
    print(f"wrote {out}", file=sys.stderr)
    return 0
