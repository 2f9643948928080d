"""``nnc compile --emit torch``: a standalone module that imports without nnc, loads an nnc weights
file and, in eval mode, equals onnxruntime on the model nnc exports with the same weights.

The specs are the engine fixtures (``tests/engine_specs``: together every op of the catalogue) and
examples with blocks (nested layer names), a recurrent layer (PyTorch's ``_l0`` keys), two inputs
and layers named like ``nn.Module`` attributes (escaped names). The weights are random (not an
initialisation, whose zero biases and unit statistics would hide a mistake). The emitted files run
in one separate Python process in which ``import nnc`` fails.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run

ROOT = Path(__file__).resolve().parents[1]


SPECS = [*sorted((ROOT / "tests" / "engine_specs").glob("*.nnspec")),
         *(ROOT / "specs" / f"{n}.nnspec" for n in ("resnet_small", "sine_lstm", "two_input_concat"))]

RUNNER = r"""
import importlib.util, json, sys
sys.modules["nnc"] = None                      # the emitted module must not need nnc
import numpy as np, torch
jobs = json.loads(sys.argv[1])
for job in jobs:
    spec = importlib.util.spec_from_file_location(job["module"], job["path"])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = getattr(mod, job["cls"])()         # built with no arguments
    mod.load_weights(model, job["weights"])
    model.eval()
    with np.load(job["inputs"]) as z:
        inputs = [torch.from_numpy(z[name]) for name in job["names"]]
    with torch.no_grad():
        out = model(*inputs)
    out = out if isinstance(out, tuple) else (out,)
    np.savez(job["outputs"], *[o.numpy() for o in out])
"""


def _random_weights(program, seed):
    from nnc.runtime.graph import Graph
    rng = np.random.default_rng(seed)
    weights = Graph(program.model, "float32").init_weights(seed)
    for k, w in weights.items():
        noise = rng.standard_normal(w.shape).astype(np.float32)
        weights[k] = (rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if k.endswith(("var", "running_var"))
                      else w + 0.1 * noise)
    return weights


def _inputs(program, rng, n=4):
    out = {}
    for inp in program.model.inputs:
        if inp.dtype == "int64":
            vocab = min(int(e.attrs["vocab"]) for e in program.model.embeddings_reading(inp.name))
            out[inp.name] = rng.integers(0, vocab, (n, *inp.shape))
        else:
            out[inp.name] = rng.standard_normal((n, *inp.shape)).astype(np.float32)
    return out


def test_emitted_modules_import_without_nnc_and_match_onnxruntime(tmp_path, capsys):
    import onnxruntime as ort

    from nnc.api import load_program
    from nnc.torch.module import camel_case
    jobs, expected = [], {}
    rng = np.random.default_rng(0)
    for i, spec in enumerate(SPECS):
        program = load_program(spec)
        name = program.model.name
        weights = _random_weights(program, i)
        np.savez(tmp_path / f"{name}.npz", **weights)
        code, _, err = run(["compile", spec, "--emit", "torch", "--weights", tmp_path / f"{name}.npz",
                            "-o", tmp_path / f"{name}.py"], capsys)
        assert code == 0, err
        assert "verified" in err
        # NOTE: unverified: onnxruntime runs it below, as the reference
        code, _, err = run(["compile", spec, "--weights", tmp_path / f"{name}.npz", "-o", tmp_path / f"{name}.onnx",
                            "--no-verify"], capsys)
        assert code == 0, err
        x = _inputs(program, rng)
        np.savez(tmp_path / f"{name}-in.npz", **x)
        sess = ort.InferenceSession(str(tmp_path / f"{name}.onnx"))
        expected[name] = sess.run(None, x)
        jobs.append({"module": f"emitted_{name}", "path": str(tmp_path / f"{name}.py"), "cls": camel_case(name),
                     "weights": str(tmp_path / f"{name}.npz"), "inputs": str(tmp_path / f"{name}-in.npz"),
                     "names": [i.name for i in program.model.inputs], "outputs": str(tmp_path / f"{name}-out.npz")})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for job in jobs:
        name = job["cls"]
        with np.load(job["outputs"]) as z:
            got = [z[f"arr_{i}"] for i in range(len(z.files))]
        want = expected[job["module"][len("emitted_"):]]
        assert len(got) == len(want), name
        for g, w in zip(got, want):
            assert g.shape == w.shape, name
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=name)


def test_escaped_and_recurrent_keys_are_mapped(tmp_path, capsys):
    code, _, err = run(["compile", ROOT / "tests" / "engine_specs" / "escaped_names.nnspec", "--emit", "torch", "-o", tmp_path / "m.py"], capsys)
    assert code == 0, err
    text = (tmp_path / "m.py").read_text()
    assert "class EscapedNames(nn.Module):" in text
    assert "'forward.weight': 'forward_.weight'" in text
    assert "'eval.weight_ih': 'eval_.weight_ih_l0'" in text
    assert "self.forward_ = nn.Linear(4, 6)" in text


def test_a_weights_file_of_another_model_is_refused(tmp_path, capsys):
    code, _, err = run(["compile", ROOT / "specs" / "iris_mlp.nnspec", "--emit", "torch", "-o", tmp_path / "m.py"], capsys)
    assert code == 0, err
    np.savez(tmp_path / "w.npz", **{"dense_9.weight": np.zeros((3, 4), np.float32)})
    import importlib.util
    spec = importlib.util.spec_from_file_location("iris_emitted", tmp_path / "m.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(KeyError, match="dense_9.weight"):
        mod.load_weights(mod.IrisMlp(), tmp_path / "w.npz")


def test_a_wrong_emitted_module_fails_verification(tmp_path, capsys, monkeypatch):
    from nnc.torch import emit
    monkeypatch.setitem(emit.EMIT, "relu", lambda em, st: f"torch.sigmoid({st.x})")
    code, _, err = run(["compile", ROOT / "specs" / "iris_mlp.nnspec", "--emit", "torch", "-o", tmp_path / "m.py"], capsys)
    assert code == 1
    assert "error[E806]" in err and "disagree" in err
    assert not (tmp_path / "m.py").exists()
