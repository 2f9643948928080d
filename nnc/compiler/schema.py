"""``nnc schema``: the JSON Schema of the IR, with per-op attribute schemas generated from the op
catalogue (a discriminated union on ``op``)."""
from __future__ import annotations

from .ir import Program
from .ops import OPS


def ir_json_schema() -> dict:
    schema = Program.model_json_schema()
    defs = schema.get("$defs", {})
    node = defs.get("Node")
    if node is not None:
        variants = []
        for name, op in OPS.items():
            attrs = op.sig.json_schema()
            variant = {
                "type": "object",
                "title": f"Node[{name}]",
                "description": op.doc,
                "properties": {**node["properties"], "op": {"const": name},
                               "attrs": {"type": "object", "properties": attrs["properties"]}},
                "required": node.get("required", []),
            }
            variants.append(variant)
        defs["Node"] = {"title": "Node", "description": node.get("description", ""),
                        "oneOf": variants, "discriminator": {"propertyName": "op"}}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nnc IR"
    return schema
