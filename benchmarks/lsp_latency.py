"""Response times of `nnc lsp`, measured from a client's side of the pipe.

    .venv/bin/python benchmarks/lsp_latency.py [--edits N]

The server runs as an editor runs it (`python -m nnc lsp`, its own process); a minimal JSON-RPC
client (here, standard library only) sends what an editor sends and times each answer:

- open: `didOpen` -> the `publishDiagnostics` of that version;
- edit: `didChange` (one number changed in a stage, so every shape after it changes; every other
  edit makes an error, a misspelled op) -> the diagnostics of that version, with the server's default
  debounce (150 ms: the time an editor waits after the last keystroke) and with `--debounce-ms 0`
  (the analysis alone);
- hover on a stage near the end, inlay hints over the whole file, completion after `->`, document
  symbols: request -> response, right after an edit (so the request includes the analysis of the new
  text) and again on the analysed text.

for the largest example spec (by layers: specs/zoo/resnet18.nnspec) and generated 1,000-layer
specs (500 lines of `dense(n) -> relu`; and a block of 10 layers used 100 times). Times are medians
over the edits (max in brackets). No assertion: speed is reported here, never tested.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Client:
    """A language-server client over the server process's standard input/output."""

    def __init__(self, cmd: list[str]):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        self.cond = threading.Condition()
        self.responses: dict[int, tuple[float, dict]] = {}       # id -> (arrival, message)
        self.published: dict[tuple[str, int], tuple[float, list]] = {}  # (uri, version) -> (arrival, diagnostics)
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            msg = json.loads(out.read(length))
            at = time.perf_counter()
            with self.cond:
                if "id" in msg and "method" not in msg:
                    self.responses[msg["id"]] = (at, msg)
                elif msg.get("method") == "textDocument/publishDiagnostics":
                    p = msg["params"]
                    self.published[(p["uri"], p.get("version"))] = (at, p["diagnostics"])
                self.cond.notify_all()

    def send(self, msg: dict) -> float:
        body = json.dumps({"jsonrpc": "2.0", **msg}).encode("utf-8")
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()
        return time.perf_counter()

    def _wait(self, table: dict, key):
        with self.cond:
            if not self.cond.wait_for(lambda: key in table, timeout=120):
                raise TimeoutError(f"no answer for {key}")
            return table.pop(key)

    def request(self, method: str, params: dict) -> tuple[float, dict]:
        self.next_id += 1
        sent = self.send({"id": self.next_id, "method": method, "params": params})
        at, msg = self._wait(self.responses, self.next_id)
        if "error" in msg:
            raise RuntimeError(msg["error"])
        return at - sent, msg.get("result")

    def notify(self, method: str, params: dict) -> float:
        return self.send({"method": method, "params": params})

    def diagnostics(self, uri: str, version: int) -> tuple[float, list]:
        return self._wait(self.published, (uri, version))

    def close(self) -> None:
        try:
            self.request("shutdown", {})
            self.notify("exit", {})
            self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            self.proc.kill()


def dense_spec(layers: int = 1000) -> str:
    body = ["model big {", "    input x: [4]"]
    body += [f"    dense({32 + i % 32}) -> relu" for i in range(layers // 2)]
    body += ["}", "", "train {", "    data = dataset(\"iris\")", "    loss = mse", "}", ""]
    return "\n".join(body)


def block_spec(uses: int = 100) -> str:
    body = ["block unit(c) {", "    x = identity", "    h = dense(c) -> layernorm -> relu -> dense(c)",
            "    add(h, x) -> relu -> dropout(0.1) -> dense(c) -> relu", "}", "model deep {", "    input x: [32]"]
    body += ["    unit(32)"] * uses
    body += ["}", ""]
    return "\n".join(body)


def position(text: str, needle: str, delta: int = 1) -> dict:
    """The position of the last ``needle`` (plus ``delta``): near the end of the file."""
    i = text.rindex(needle) + delta
    line = text.count("\n", 0, i)
    return {"line": line, "character": i - (text.rfind("\n", 0, i) + 1)}


def measure(name: str, text: str, edit: tuple[str, str], edits: int, debounce: int) -> dict:
    client = Client([sys.executable, "-m", "nnc", "lsp", "--debounce-ms", str(debounce)])
    client.request("initialize", {"processId": os.getpid(), "rootUri": ROOT.as_uri(), "capabilities": {}})
    client.notify("initialized", {})
    uri = (ROOT / f"{name}.nnspec").as_uri()
    sent = client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "nnspec",
                                                                    "version": 1, "text": text}})
    at, diags = client.diagnostics(uri, 1)
    result = {"open": at - sent, "diagnostics": len(diags)}
    times: dict[str, list[float]] = {k: [] for k in ("edit", "hover after edit", "hover", "inlay hints",
                                                     "completion", "symbols")}
    ident = {"uri": uri}
    lines = len(text.splitlines())
    for k in range(edits):
        version = k + 2
        if k % 2:  # an error: the op's name misspelt
            op = edit[0].split("(")[0]
            new = text.replace(edit[0], edit[0].replace(op, op[0] + op[2] + op[1] + op[3:], 1), 1)
        else:      # another number: every shape (or check) after it changes
            new = text.replace(edit[0], edit[1], 1)
        sent = client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                                         "contentChanges": [{"text": new}]})
        at, _ = client.diagnostics(uri, version)
        times["edit"].append(at - sent)
        # the next edit's text, then a request at once: the request waits for nothing but the analysis
        client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 1000 + k},
                                                  "contentChanges": [{"text": text}]})
        dt, _ = client.request("textDocument/hover", {"textDocument": ident, "position": position(text, "dense(")})
        times["hover after edit"].append(dt)
        dt, hover = client.request("textDocument/hover", {"textDocument": ident, "position": position(text, "dense(")})
        times["hover"].append(dt)
        dt, _ = client.request("textDocument/inlayHint", {"textDocument": ident, "range": {
            "start": {"line": 0, "character": 0}, "end": {"line": lines, "character": 0}}})
        times["inlay hints"].append(dt)
        dt, _ = client.request("textDocument/completion", {"textDocument": ident,
                                                           "position": position(text, "-> ", 3)})
        times["completion"].append(dt)
        dt, _ = client.request("textDocument/documentSymbol", {"textDocument": ident})
        times["symbols"].append(dt)
        client.diagnostics(uri, 1000 + k)
    client.close()
    for k, v in times.items():
        result[k] = (statistics.median(v), max(v))
    result["hover shows"] = (hover or {}).get("contents", {}).get("value", "").splitlines()[-1][:60]
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=10)
    args = ap.parse_args()
    from nnc.compiler.lower import compile_source
    resnet = (ROOT / "specs" / "zoo" / "resnet18.nnspec").read_text(encoding="utf-8")
    cases = [("resnet18 (the largest example)", resnet, ("conv2d(64, 7", "conv2d(65, 7")),
             ("dense x 1,000", dense_spec(), ("dense(48)", "dense(148)")),
             ("block x 100 (1,000 layers)", block_spec(), ("dropout(0.1)", "dropout(0.2)"))]
    print(f"nnc lsp response times (ms): median [max] over {args.edits} edits; {os.cpu_count()} cores")
    for name, text, edit in cases:
        layers = len(compile_source(text, "b").model.nodes)
        for debounce in (150, 0):
            r = measure(name.split()[0], text, edit, args.edits, debounce)
            head = f"{name}: {layers} layers, {len(text):,} characters, debounce {debounce} ms"
            print(f"\n{head}\n  open -> diagnostics: {1000 * r['open']:.0f}")
            for k in ("edit", "hover after edit", "hover", "inlay hints", "completion", "symbols"):
                med, worst = r[k]
                label = "edit -> diagnostics" if k == "edit" else k
                print(f"  {label}: {1000 * med:.0f} [{1000 * worst:.0f}]")


if __name__ == "__main__":
    main()
