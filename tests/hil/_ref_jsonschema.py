"""A small, obviously-correct JSON Schema checker for the subset the log schemas use.

Supports ``type`` (a name or a list), ``properties``, ``required``, ``items``, ``const``,
``oneOf``, ``anyOf``, ``minimum``, ``maximum`` and ``contentEncoding: base64``. Returns a list
of error strings (empty = valid). Used as a second opinion next to ``jsonschema`` (when that
package is installed) and on its own when it is not.
"""
import base64
import binascii

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def check(value, schema: dict, path: str = "$") -> list[str]:
    errors: list[str] = []
    t = schema.get("type")
    if t is not None:
        names = [t] if isinstance(t, str) else list(t)
        if not any(_TYPES[n](value) for n in names):
            return [f"{path}: {value!r:.60} is not of type {names}"]
    if "const" in schema and not (value == schema["const"] and type(value) is type(schema["const"])):
        errors.append(f"{path}: {value!r} != const {schema['const']!r}")
    if "oneOf" in schema:
        hits = sum(1 for s in schema["oneOf"] if not check(value, s, path))
        if hits != 1:
            errors.append(f"{path}: {value!r:.60} matches {hits} of oneOf (need exactly 1)")
    if "anyOf" in schema and not any(not check(value, s, path) for s in schema["anyOf"]):
        errors.append(f"{path}: {value!r:.60} matches none of anyOf")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} > maximum {schema['maximum']}")
    if isinstance(value, str) and schema.get("contentEncoding") == "base64":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            errors.append(f"{path}: not base64")
    if isinstance(value, dict):
        for k in schema.get("required", []):
            if k not in value:
                errors.append(f"{path}: missing required {k!r}")
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                errors.extend(check(value[k], sub, f"{path}.{k}"))
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errors.extend(check(v, schema["items"], f"{path}[{i}]"))
    return errors


_FOXGLOVE_TYPES = {"boolean", "string", "number", "integer", "object", "array"}
_FOXGLOVE_ITEM_TYPES = {"boolean", "string", "number", "integer", "object"}


def foxglove_dialect_problems(schema: dict, path: str = "$") -> list[str]:
    """What Foxglove's JSON-schema reader would refuse (its rules, as documented in its source):
    objects need ``properties``; every field needs one ``type`` from a fixed set, or a ``oneOf``
    whose alternatives are all numeric ``const``; ``contentEncoding`` only ``base64`` on string
    fields; array items need a type (not ``array``, no ``contentEncoding``)."""
    out = []
    if schema.get("type") != "object":
        return [f"{path}: expected type object, got {schema.get('type')!r}"]
    if not isinstance(schema.get("properties"), dict):
        return [f"{path}: object without properties"]
    for name, f in schema["properties"].items():
        p = f"{path}.{name}"
        if isinstance(f.get("oneOf"), list):
            if not all(isinstance(a.get("const"), (int, float)) and not isinstance(a.get("const"), bool)
                       for a in f["oneOf"]):
                out.append(f"{p}: oneOf alternatives must be numeric consts")
            continue
        t = f.get("type")
        if not isinstance(t, str) or t not in _FOXGLOVE_TYPES:
            out.append(f"{p}: unsupported type {t!r}")
        elif t == "string" and f.get("contentEncoding") not in (None, "base64"):
            out.append(f"{p}: unsupported contentEncoding {f['contentEncoding']!r}")
        elif t == "object":
            out.extend(foxglove_dialect_problems(f, p))
        elif t == "array":
            it = f.get("items") or {}
            if not isinstance(it.get("type"), str) or it["type"] not in _FOXGLOVE_ITEM_TYPES:
                out.append(f"{p}[]: unsupported item type {it.get('type')!r}")
            elif it.get("type") == "string" and it.get("contentEncoding") is not None:
                out.append(f"{p}[]: contentEncoding on array items")
            elif it.get("type") == "object":
                out.extend(foxglove_dialect_problems(it, p + "[]"))
    return out
