"""The ``nnc`` command: argparse verbs -> library calls; exit codes; text / json / github output.

Exit codes (every verb): 0 success; 2 the command line itself is wrong (unknown verb or flag, a
missing or malformed argument, a path named on the command line that does not exist); 1 every
other error, with diagnostics printed. No input produces a traceback: an internal failure says it is
a bug and how to report it (set ``NNC_DEBUG=1`` to see the traceback).

Imports are lazy: ``nnc check`` loads only the grammar and the compiler (no numpy, onnx or
onnxruntime) so that it starts fast in CI.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from .version import __version__

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
ISSUES_URL = "https://github.com/nnc-dev/nnc/issues"


class UsageError(Exception):
    """The command line is wrong: exit code 2."""


# ----------------------------------------------------------------------------------------------
# output helpers

class Reporter:
    """Prints diagnostics in the chosen format; remembers sources so text can show the line."""

    def __init__(self, fmt: str = "text", stream=None):
        self.fmt = fmt
        self.stream = stream or sys.stdout
        self.diagnostics: list = []

    def add(self, err, source: str | None = None) -> None:
        """Print ``err``'s diagnostics. A diagnostic shows the line it points into from
        ``err.sources`` (the spec, a data file, a ``--set`` value); ``source`` is the text of the spec
        being processed, for an error that carries no texts of its own."""
        from .errors import render_github, render_text
        for d in err.diagnostics:
            src = self._source_for(d, err, source)
            self.diagnostics.append(d)
            if self.fmt == "text":
                print(render_text(d, src), file=self.stream)
            elif self.fmt == "github":
                print(render_github(d), file=self.stream)

    @staticmethod
    def _source_for(d, err, source: str | None) -> str | None:
        """The text ``d`` points into: a ``--set``/``--data`` value, the spec, or a data file."""
        text = err.sources.get(d.path)
        if text is not None:
            return text
        return source if not err.sources else None   # the texts it carries are other files

    def finish_json(self, files_checked: int) -> None:
        from .errors import render_json
        print(render_json(self.diagnostics, files_checked), file=self.stream)


def _read_spec(path: str) -> bytes:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{path}: no such file or directory")
    if p.is_dir():
        raise UsageError(f"{path}: is a directory (this verb takes one spec file)")
    try:
        return p.read_bytes()
    except OSError as exc:
        from .errors import NncError
        raise NncError.single("E002", f"cannot read the file: {exc.strerror or exc}", path=path,
                              hint="check the file's permissions") from None


def _decode_for_display(data: bytes) -> str | None:
    """The text to show under a diagnostic; undecodable bytes are shown as U+FFFD."""
    if b"\x00" in data[:8192]:
        return None
    return data.decode("utf-8", "replace").lstrip("\ufeff")


def _expand_paths(paths: list[str], suffix: str = ".nnspec") -> tuple[list[Path], list[str]]:
    """The spec files named (folders: every spec under them), and the folders that hold none: a CI
    step pointed at the wrong folder must fail, not pass with nothing checked."""
    out: list[Path] = []
    empty: list[str] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise UsageError(f"{raw}: no such file or directory")
        if p.is_dir():
            found = sorted(q for q in p.rglob(f"*{suffix}") if q.is_file())
            out.extend(found)
            if not found:
                empty.append(raw)
        else:
            out.append(p)
    return out, empty


def _report_empty(empty: list[str], verb: str) -> None:
    for raw in empty:
        print(f"nnc: error: {raw}: no .nnspec files in this directory\n"
              f"  hint: check the path; nnc {verb} looks for *.nnspec files under it (in subfolders too)",
              file=sys.stderr)


def _load_program(path: str, settings: list[str] | None = None):
    """Compile a spec file (with ``--set`` overrides); NncError carries the source for display.

    The compiler's warnings are printed to standard error (the verb goes on: a warning never
    changes the exit code)."""
    from .errors import NncError
    from .compiler.lower import compile_source, parse_overrides
    data = _read_spec(path)
    sources = {f"<--set {k.strip()}>": v.strip() for k, _, v in (s.partition("=") for s in settings or [])}
    try:
        overrides = parse_overrides(settings)
        program = compile_source(data, path, overrides=overrides)
    except NncError as err:
        err.sources = {**sources, **err.sources, path: _decode_for_display(data)}
        raise
    if program.warnings and os.environ.get("RANK", "0") == "0":   # one of several processes: rank 0 says it
        warned = NncError(program.warnings)
        warned.sources = {**sources, path: _decode_for_display(data)}
        Reporter("text", sys.stderr).add(warned, _decode_for_display(data))
    return program, data


# ----------------------------------------------------------------------------------------------
# verbs

def cmd_check(args) -> int:
    from .errors import NncError, plural
    from .compiler.lower import check_source

    files, empty = _expand_paths(args.paths)   # a folder with no spec under it is an error (exit 1)
    rep = Reporter(args.format)
    failed = 0
    for f in files:
        data = b""
        warnings: list = []
        try:
            data = f.read_bytes()
            check_source(data, str(f), warnings=warnings)
        except NncError as err:
            failed += 1
            rep.add(err, _decode_for_display(data))
        except OSError as exc:
            failed += 1
            rep.add(NncError.single("E002", f"cannot read the file: {exc.strerror or exc}", path=str(f)))
        else:
            if warnings:
                rep.add(NncError(warnings), _decode_for_display(data))
    _report_empty(empty, "check")
    if args.format == "json":
        rep.finish_json(len(files))
    elif args.format == "text" and files:
        errors = sum(d.severity == "error" for d in rep.diagnostics)
        warned = len(rep.diagnostics) - errors
        found = f"{plural(errors, 'error')} in {plural(failed, 'file')}" if failed else "no errors"
        if warned:
            found += f", {plural(warned, 'warning')}"
        print(f"checked {plural(len(files), 'file')}: {found}", file=sys.stderr)
    return EXIT_ERROR if failed or empty else EXIT_OK


def cmd_summary(args) -> int:
    from .compiler.summary import render_summary
    program, _ = _load_program(args.spec, args.set)
    print(render_summary(program))
    return EXIT_OK


def cmd_compile(args) -> int:
    _input_path(args.weights)
    program, _ = _load_program(args.spec, args.set)
    if args.emit == "ir":
        text = program.ir_json()
        if args.output and args.output != "-":
            from .util import atomic_write_text
            atomic_write_text(Path(args.output), text + "\n", code="E804")
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            print(text)
        return EXIT_OK
    if args.emit == "torch":
        return _emit_torch(program, args)
    from . import api
    out = Path(args.output) if args.output else Path(f"{program.model.name}.onnx")
    labels = None
    if args.weights:  # weights of a run: its data.json has the label map the export carries
        from .dataload import data_info_of
        info = data_info_of(args.weights)
        labels = info.labels if info is not None else None
    report = api.export_onnx(program, out, weights=args.weights, opset=args.opset, verify=not args.no_verify,
                             labels=labels)
    print(report, file=sys.stderr)
    return EXIT_OK


def _emit_torch(program, args) -> int:
    """``--emit torch``: the standalone module, verified against the NumPy runtime unless --no-verify."""
    from .torch import require_torch
    require_torch("`nnc compile --emit torch`")
    from .torch.emit import class_name, emit_torch, verify
    from .util import atomic_write_text
    source = emit_torch(program)
    note = "not verified (--no-verify)"
    if not args.no_verify:
        from .runtime.graph import Graph
        from .runtime.weights import load_weights
        weights = (load_weights(args.weights, program.model, "float32") if args.weights
                   else Graph(program.model, "float32").init_weights(program.seed))
        note = f"verified: eval outputs equal the NumPy runtime's, max |diff| {verify(program, source, weights):.1e}"
    if args.output == "-":
        print(source, end="")
        print(f"torch module for {program.model.name}: {note}", file=sys.stderr)
        return EXIT_OK
    out = Path(args.output) if args.output else Path(f"{program.model.name}.py")
    atomic_write_text(out, source, code="E804")
    print(f"wrote {out} (class {class_name(program)}); {note}", file=sys.stderr)
    return EXIT_OK


def cmd_fmt(args) -> int:
    from .errors import NncError
    from .compiler.format import format_source
    from .util import atomic_write_text
    files, empty = _expand_paths(args.paths)
    rep = Reporter("text")
    changed, failed = [], 0
    for f in files:
        data = f.read_bytes()
        try:
            from .compiler.parse import decode_source
            text = decode_source(data, str(f))
            new = format_source(text, str(f))
        except NncError as err:
            failed += 1
            rep.add(err, _decode_for_display(data))
            continue
        if new != text:
            changed.append(f)
            if args.check:
                print(f"would reformat {f}")
            else:
                atomic_write_text(f, new, code="E002")
                print(f"reformatted {f}")
    if args.check and changed:
        print(f"{len(changed)} file{'s' * (len(changed) != 1)} would be reformatted", file=sys.stderr)
    _report_empty(empty, "fmt")
    return EXIT_ERROR if failed or empty or (args.check and changed) else EXIT_OK


def cmd_schema(args) -> int:
    from .compiler.schema import ir_json_schema
    import json
    print(json.dumps(ir_json_schema(), indent=2))
    return EXIT_OK


def cmd_lsp(args) -> int:
    from .lsp import run
    if args.debounce_ms is not None and args.debounce_ms < 0:
        raise UsageError("--debounce-ms must be 0 or more")
    return run(None if args.debounce_ms is None else args.debounce_ms / 1000)


def cmd_graph(args) -> int:
    from .commands.graph import DRAWN_FORMATS, TEXT_FORMATS
    if args.output and args.output != "-" and Path(args.output).suffix.lower() not in TEXT_FORMATS + DRAWN_FORMATS:
        raise UsageError(f"-o {args.output}: nnc graph writes " + ", ".join(TEXT_FORMATS + DRAWN_FORMATS)
                         + " files (or DOT text on standard output without -o)")
    program, _ = _load_program(args.spec, args.set)
    from .commands.graph import graph_command
    return graph_command(program, args)


def cmd_plot(args) -> int:
    _input_path(args.run_dir)
    from .commands.plot import FORMATS, plot_command
    if args.output and Path(args.output).suffix.lower() not in FORMATS:
        raise UsageError(f"-o {args.output}: nnc plot writes " + ", ".join(FORMATS) + " files")
    return plot_command(args)


def _input_path(path: str | None) -> None:
    if path is not None and not Path(path).exists():
        raise UsageError(f"{path}: no such file or directory")


def cmd_train(args) -> int:
    _input_path(args.init)
    _input_path(args.resume)
    if args.resume and args.overwrite:
        raise UsageError("--overwrite starts a new run and --resume continues one: give one of them")
    if args.engine != "torch" and (args.device is not None or args.nproc > 1):
        raise UsageError(f"{'--device' if args.device is not None else '--nproc'} is an option of the torch engine: "
                         "add --engine torch")
    program, _ = _load_program(args.spec, args.set)
    from .commands.train import train_command
    return train_command(program, args)


def cmd_evaluate(args) -> int:
    _input_path(args.weights)
    program, _ = _load_program(args.spec, args.set)
    from .commands.infer import evaluate_command
    return evaluate_command(program, args)


def cmd_predict(args) -> int:
    _input_path(args.weights)
    _input_path(None if args.input.rstrip().endswith(")") else args.input)  # npz("f.npz", x="k"): read later
    program, _ = _load_program(args.spec, args.set)
    from .commands.infer import predict_command
    return predict_command(program, args)


# ----------------------------------------------------------------------------------------------
# parser

def _parser_class():
    """The argument parser class (argparse is imported only when a command line needs it)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message):  # exit 2 with the usage, as argparse does, but never a traceback
            self.print_usage(sys.stderr)
            print(f"nnc: error: {message}", file=sys.stderr)
            import re
            flag = re.search(r"unrecognized arguments: --([A-Za-z_]+)", message)
            if flag:
                print(f"  hint: train keys and `let` constants are set with --set, e.g. --set {flag.group(1)}=...",
                      file=sys.stderr)
            raise SystemExit(EXIT_USAGE)

    return _Parser


def _device(text: str) -> str:
    import argparse
    import re
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use auto, cpu, cuda or cuda:N")
    return text


def _positive(text: str) -> int:
    import argparse
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of processes")
    return n


def build_parser(only: str | None = None):
    """The command line (an ``argparse.ArgumentParser``); ``only="check"`` builds the ``check`` verb
    alone (what ``nnc check`` needs: its usage, help and errors are the same, and the other verbs
    cost start-up)."""
    _Parser = _parser_class()
    p = _Parser(prog="nnc", description="nnc: check, train and export neural networks written as .nnspec files.")
    p.add_argument("--version", action="version", version=f"nnc {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True

    c = sub.add_parser("check", help="parse, validate and infer shapes of spec files or folders")
    c.add_argument("paths", nargs="+", metavar="PATH")
    c.add_argument("--format", choices=("text", "json", "github"), default="text")
    c.set_defaults(func=cmd_check)
    if only == "check":
        return p

    s = sub.add_parser("summary", help="table of layers, shapes, parameters and FLOPs")
    s.add_argument("spec", metavar="SPEC")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a `let` constant")
    s.set_defaults(func=cmd_summary)

    co = sub.add_parser("compile", help="export to ONNX (default), a PyTorch module, or print the validated IR")
    co.add_argument("spec", metavar="SPEC")
    co.add_argument("-o", "--output", metavar="OUT", help="output file (default <model>.onnx; IR: stdout)")
    co.add_argument("--weights", metavar="W.npz", help="trained weights (default: seeded initialisation)")
    co.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: newest onnxruntime supports)")
    co.add_argument("--emit", choices=("onnx", "ir", "torch"), default="onnx",
                    help="onnx (default), ir (JSON), or torch (a standalone PyTorch module, default <model>.py)")
    co.add_argument("--no-verify", action="store_true", help="skip checking the export against the runtime")
    co.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a `let` constant")
    co.set_defaults(func=cmd_compile)

    t = sub.add_parser("train", help="train with the NumPy runtime or PyTorch (--engine torch)")
    t.add_argument("spec", metavar="SPEC")
    t.add_argument("--data", metavar="SRC", help='data source, e.g. \'csv("x.csv", target="y")\'')
    t.add_argument("--out", metavar="DIR", help="run directory (default: runs/<model>, or runs/<model>-2, ... "
                   "if that holds a run)")
    t.add_argument("--init", metavar="W.npz", help="start from these weights")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint")
    t.add_argument("--overwrite", action="store_true",
                   help="train into an --out that holds a run, removing that run's files first")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a train key or `let` constant")
    t.add_argument("--quiet", action="store_true", help="print only the final result")
    t.add_argument("--engine", choices=("numpy", "torch"), default="numpy",
                   help="numpy (default, the NumPy runtime) or torch (PyTorch: a GPU, several processes)")
    t.add_argument("--device", type=_device, metavar="auto|cpu|cuda|cuda:N",
                   help="torch engine: where to train (default auto: CUDA when it is available)")
    t.add_argument("--nproc", type=_positive, default=1, metavar="N",
                   help="torch engine: train data-parallel on N local processes (torch.distributed.run)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="loss and metrics of trained weights on data")
    e.add_argument("spec", metavar="SPEC")
    e.add_argument("--weights", metavar="W.npz", required=True)
    e.add_argument("--data", metavar="SRC")
    e.add_argument("--set", action="append", metavar="KEY=VALUE")
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="model outputs for .npy, .npz or .csv inputs")
    pr.add_argument("spec", metavar="SPEC")
    pr.add_argument("--weights", metavar="W.npz", required=True)
    pr.add_argument("--input", metavar="INPUT", required=True,
                    help='a .npy, .npz or .csv file, or \'npz("f.npz", x="KEY")\' / \'csv("f.csv", target="COL")\'')
    pr.add_argument("-o", "--output", metavar="OUT", help=".npy, .npz or .csv (default: print)")
    pr.add_argument("--set", action="append", metavar="KEY=VALUE")
    pr.set_defaults(func=cmd_predict)

    f = sub.add_parser("fmt", help="rewrite spec files in canonical form")
    f.add_argument("paths", nargs="+", metavar="PATH")
    f.add_argument("--check", action="store_true", help="exit 1 if a file would change; write nothing")
    f.set_defaults(func=cmd_fmt)

    sc = sub.add_parser("schema", help="the JSON Schema of the IR")
    sc.set_defaults(func=cmd_schema)

    g = sub.add_parser("graph", help="draw the network: DOT, or SVG/PNG with Graphviz")
    g.add_argument("spec", metavar="SPEC")
    g.add_argument("-o", "--output", metavar="FILE", help=".dot (default: DOT on standard output), .svg or .png")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a `let` constant")
    g.set_defaults(func=cmd_graph)

    pl = sub.add_parser("plot", help="plot a run's training curves (loss, metrics, learning rate)")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.add_argument("-o", "--output", metavar="FILE", help="the picture (default RUN_DIR/curves.png; .png, .svg or .pdf)")
    pl.set_defaults(func=cmd_plot)

    ls = sub.add_parser("lsp", help="the language server, on standard input/output (for editors)")
    ls.add_argument("--stdio", action="store_true", help="accepted for editors that pass it (always stdio)")
    ls.add_argument("--debounce-ms", type=int, metavar="MS", help="quiet time after an edit before its "
                    "diagnostics are computed (default 150)")
    ls.set_defaults(func=cmd_lsp)
    return p


def _plain_check(words: list[str]):
    """``nnc check PATH... [--format F]`` read without argparse (whose import and parser cost a
    tenth of `nnc check`'s start-up), exactly as argparse reads it; None for anything else (help,
    errors, abbreviations, ``--``, ``=``), which argparse reads."""
    if words[:1] != ["check"]:
        return None
    rest, fmt = words[1:], "text"
    if len(rest) >= 2 and rest[-2] == "--format":
        fmt, rest = rest[-1], rest[:-2]
    elif len(rest) >= 2 and rest[0] == "--format":
        fmt, rest = rest[1], rest[2:]
    if fmt not in ("text", "json", "github") or not rest or any(w.startswith("-") for w in rest):
        return None
    from types import SimpleNamespace  # what argparse would return: an argparse.Namespace's fields
    return SimpleNamespace(verb="check", paths=rest, format=fmt, func=cmd_check)


def main(argv: list[str] | None = None) -> int:
    from .streams import GuardedStream, OutputClosed
    words = sys.argv[1:] if argv is None else argv
    args = _plain_check(list(words))
    if args is None:
        args = build_parser("check" if words[:1] == ["check"] else None).parse_args(argv)
    # NOTE: train's results are its run files, so a console that goes away must not stop it; every
    # other verb's results (or diagnostics) are on standard output, so losing them is an error.
    saved = sys.stdout, sys.stderr
    sys.stdout = GuardedStream(sys.stdout, "standard output", fatal=args.verb != "train")
    sys.stderr = GuardedStream(sys.stderr, "standard error", fatal=False)
    try:
        code = _run(args)
        sys.stdout.flush()
        return code
    except OutputClosed as exc:
        print(f"nnc: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        sys.stdout, sys.stderr = saved


def _run(args) -> int:
    from .streams import OutputClosed
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"nnc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # the contract has no exit code of its own for this: it is an error
        print("nnc: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except OutputClosed:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        from .errors import NncError
        if isinstance(exc, NncError):
            rep = Reporter(getattr(args, "format", "text") if getattr(args, "format", "text") != "json" else "text",
                           sys.stderr)
            spec = getattr(args, "spec", None)
            for d in exc.diagnostics:  # errors of training, evaluation, export: about this spec
                if d.path is None and spec is not None:
                    d.path = spec
            if spec is not None and spec not in exc.sources:  # e.g. a data error at the spec's `data =`
                with contextlib.suppress(OSError):
                    exc.sources[spec] = _decode_for_display(Path(spec).read_bytes()) or ""
            rep.add(exc, exc.sources.get(spec))
            return EXIT_ERROR
        if os.environ.get("NNC_DEBUG"):
            raise
        print(f"nnc: internal error: {type(exc).__name__}: {exc}\n"
              f"This is a bug in nnc {__version__}, not in your spec. Please report it at {ISSUES_URL} "
              "with the command you ran and the spec (run with NNC_DEBUG=1 to include the traceback).",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
