"""Running the ``nnc`` command in-process from tests."""
from nnc.cli import main


def run(argv, capsys):
    """``(exit code, stdout, stderr)`` of ``nnc ARGV``; a traceback anywhere fails the test."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse: usage errors, --help, --version
        code = exc.code
    out = capsys.readouterr()
    for stream in (out.out, out.err):
        assert "Traceback" not in stream
        assert "internal error" not in stream
    return code, out.out, out.err
