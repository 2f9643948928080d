"""The README's examples run as written."""
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_python_example_runs(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S).group(1)
    os.symlink(ROOT / "specs", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)                   # the example writes iris.npz and iris.onnx here
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert len(namespace["history"]) == 100
    assert namespace["probs"].shape == (150, 3)
    assert (tmp_path / "iris.npz").exists() and (tmp_path / "iris.onnx").exists()
