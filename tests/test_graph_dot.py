"""``nnc graph``: DOT text from the IR (golden files for every example spec in tests/graph/), its
structure against the IR (every layer a node, every input an edge, every block use a cluster inside
its parent's), label escaping, and the pictures Graphviz's ``dot`` draws from it (SVG parsed as XML,
PNG by its magic bytes, header and size) when ``dot`` is installed.

    NNC_UPDATE_GOLDEN=1 pytest tests/test_graph_dot.py     # rewrite the golden .dot files (then READ them)
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cli_helpers import run
from nnc.compiler.dot import html, quote, to_dot
from nnc.compiler.lower import compile_source

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "graph"
EXAMPLES = sorted((ROOT / "specs").rglob("*.nnspec"))
UPDATE = bool(os.environ.get("NNC_UPDATE_GOLDEN"))
HAVE_DOT = shutil.which("dot") is not None
NO_DOT = ("Graphviz's `dot` is not on PATH, so nothing can be drawn here: `make system-deps` installs it "
          "(CI runs it), or apt-get install graphviz")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _golden_name(spec: Path) -> str:
    return spec.relative_to(ROOT / "specs").with_suffix(".dot").as_posix().replace("/", "__")


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_golden_dot(spec: Path):
    text = to_dot(compile_source(spec.read_bytes(), str(spec)).model)
    golden = GOLDEN / _golden_name(spec)
    if UPDATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
        return
    assert golden.exists(), f"no golden file {golden.name}; run with NNC_UPDATE_GOLDEN=1 and read it"
    assert text == golden.read_text(encoding="utf-8")


def test_every_golden_file_has_its_spec():
    names = {_golden_name(s) for s in EXAMPLES}
    assert {p.name for p in GOLDEN.glob("*.dot")} == names


# ----------------------------------------------------------------------------------------------
# structure: read back from the DOT text, compared with the IR

_NODE = re.compile(r'^(\s*)"((?:[^"\\]|\\.)*)" \[label=<(.*)>\];$')
_EDGE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)";$')
_CLUSTER = re.compile(r'^(\s*)subgraph "cluster_((?:[^"\\]|\\.)*)" \{$')


def read_dot(text: str):
    """(nodes: id -> (label, enclosing cluster), edges, clusters: id -> parent cluster)."""
    nodes, edges, clusters, stack = {}, [], {}, []
    for line in text.splitlines()[1:-1]:
        if m := _CLUSTER.match(line):
            clusters[m.group(2)] = stack[-1] if stack else None
            stack.append(m.group(2))
        elif line.strip() == "}":
            stack.pop()
        elif m := _NODE.match(line):
            nodes[m.group(2)] = (m.group(3), stack[-1] if stack else None)
        elif m := _EDGE.match(line):
            edges.append((m.group(1), m.group(2)))
    assert not stack
    return nodes, edges, clusters


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_the_picture_is_the_ir(spec: Path):
    model = compile_source(spec.read_bytes(), str(spec)).model
    nodes, edges, clusters = read_dot(to_dot(model))
    for i in model.inputs:
        assert i.name in nodes and f"[{', '.join(map(str, i.shape))}]" in nodes[i.name][0]
    for n in model.nodes:
        label, cluster = nodes[n.id]
        assert f"<B>{n.id}</B>" in label and f"<TD>{n.op}</TD>" in label
        assert f"[{', '.join(map(str, n.shape))}]" in label
        if n.params:
            assert f"{n.params:,} params" in label
        assert cluster == n.block  # a layer of a block use is in that use's cluster
        for src in n.inputs:
            assert (src, n.id) in edges  # a merge is a join: one edge from each input
    assert clusters == {u.id: u.parent for u in model.blocks}
    for o in model.outputs:
        assert (o.source, f"output:{o.name}") in edges
    assert len(edges) == sum(len(n.inputs) for n in model.nodes) + len(model.outputs)


def test_arguments_shown_are_the_ones_not_at_their_default():
    src = """model m {
    input x: [3, 16, 16]
    conv2d(8, 3, stride=2, padding=same, bias=false) -> softmax(axis=0)
    maxpool2d(2) -> avgpool2d(2, stride=1)
    flatten -> dense(4, init=he_normal) -> softmax
}
"""
    nodes, _, _ = read_dot(to_dot(compile_source(src, "t").model))
    assert "<TD COLSPAN=\"2\">8, 3, stride=2, padding=same, bias=false</TD>" in nodes["conv2d_1"][0]
    assert ">2</TD>" in nodes["maxpool2d_1"][0] and "stride" not in nodes["maxpool2d_1"][0]  # stride = size
    assert "2, stride=1" in nodes["avgpool2d_1"][0]
    assert "4, init=he_normal" in nodes["dense_1"][0]
    assert "axis" not in nodes["softmax_2"][0]  # axis=-1 is the default, normalised to 0 on [4]
    assert "axis=0" in nodes["softmax_1"][0]  # axis 0 of [8, 8, 8] is not the default -1 (2)


SPECIAL = '''block tagged(label, c = 4) {
    dense(c) -> relu
}
model m {
    input x: [4]
    tagged("a <b> & c", name="quoted")
    tagged('x"y', c = 2)
}
'''


def test_labels_are_escaped():
    assert html('a<b>&"c"') == "a&lt;b&gt;&amp;&quot;c&quot;"
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    text = to_dot(compile_source(SPECIAL, "t").model)
    assert "<B>quoted</B>  ·  tagged(label = &quot;a &lt;b&gt; &amp; c&quot;, c = 4)" in text
    assert "<B>tagged_1</B>  ·  tagged(label = 'x&quot;y', c = 2)" in text  # the second use, unnamed


@pytest.mark.skipif(not HAVE_DOT, reason=NO_DOT)
def test_escaped_labels_draw(tmp_path: Path, capsys):
    spec = tmp_path / "special.nnspec"
    spec.write_text(SPECIAL, encoding="utf-8")
    code, _, err = run(["graph", spec, "-o", tmp_path / "special.svg"], capsys)
    assert code == 0, err
    root = ET.parse(tmp_path / "special.svg").getroot()
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "a <b> & c" in texts and "quoted" in texts


# ----------------------------------------------------------------------------------------------
# the command

def test_dot_on_standard_output_and_to_a_file(tmp_path: Path, capsys):
    spec = ROOT / "specs" / "digits_cnn.nnspec"
    golden = (GOLDEN / "digits_cnn.dot").read_text(encoding="utf-8")
    code, out, _ = run(["graph", spec], capsys)
    assert code == 0 and out == golden
    code, out, err = run(["graph", spec, "-o", tmp_path / "net.gv"], capsys)
    assert code == 0 and out == "" and (tmp_path / "net.gv").read_text(encoding="utf-8") == golden


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.skipif(not HAVE_DOT, reason=NO_DOT)
@pytest.mark.parametrize("name", ["digits_cnn", "resnet_small", "two_input_concat"])
def test_drawn_by_graphviz(name: str, tmp_path: Path, capsys):
    spec = ROOT / "specs" / f"{name}.nnspec"
    model = compile_source(spec.read_bytes(), str(spec)).model
    png, svg = tmp_path / f"{name}.png", tmp_path / f"{name}.svg"
    assert run(["graph", spec, "-o", png], capsys)[0] == 0
    assert run(["graph", spec, "-o", svg], capsys)[0] == 0
    data = png.read_bytes()
    width, height = _png_size(data)
    # one node per layer, stacked: at least a node's height (about 40 px) per layer on the longest path
    assert width >= 200 and height >= 25 * len(model.nodes) // (2 if name == "two_input_concat" else 1)
    assert len(data) > 10_000
    root = ET.parse(svg).getroot()
    titles = {t.text for t in root.iter("{http://www.w3.org/2000/svg}title")}
    assert {n.id for n in model.nodes} <= titles
    assert {f"cluster_{u.id}" for u in model.blocks} <= titles


def test_without_graphviz_the_error_says_how_to_get_it(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` there
    code, out, err = run(["graph", ROOT / "specs" / "xor_mlp.nnspec", "-o", tmp_path / "x.png"], capsys)
    assert code == 1 and "error[E901]" in err and "apt-get install graphviz" in err
    assert not (tmp_path / "x.png").exists()
    assert run(["graph", ROOT / "specs" / "xor_mlp.nnspec", "-o", tmp_path / "x.dot"], capsys)[0] == 0


def test_command_line_mistakes(tmp_path: Path, capsys):
    spec = ROOT / "specs" / "xor_mlp.nnspec"
    code, _, err = run(["graph", spec, "-o", tmp_path / "x.jpg"], capsys)
    assert code == 2 and ".svg" in err
    code, _, err = run(["graph", spec, "-o", tmp_path / "missing" / "x.dot"], capsys)
    assert code == 1 and "error[E903]" in err and "does not exist" in err
    code, _, err = run(["graph", tmp_path / "nope.nnspec"], capsys)
    assert code == 2
    bad = tmp_path / "bad.nnspec"
    bad.write_text("model m {\n    input x: [4]\n    dnse(3)\n}\n", encoding="utf-8")
    code, out, err = run(["graph", bad], capsys)
    assert code == 1 and "E301" in err and out == ""
