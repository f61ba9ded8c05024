"""Check a request against an OpenAPI document's request schemas (the real LiteLLM's).

Small on purpose: what the client sends is JSON objects, lists, strings, numbers, booleans and
nulls, and query strings. Stricter than the proxy itself in one way: a body field the schema
does not declare is an error (LiteLLM's models may ignore it silently; that is how a client
drifts without noticing).
"""

from __future__ import annotations

from typing import Any

TYPES = {"string": str, "boolean": bool, "array": list, "object": dict}


def resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in schema and seen < 20:
        name = schema["$ref"].split("/")[-1]
        schema = doc["components"]["schemas"][name]
        seen += 1
    return schema


def check(value: Any, schema: dict[str, Any], doc: dict[str, Any], where: str) -> list[str]:
    schema = resolve(schema, doc)
    for combo in ("anyOf", "oneOf"):
        if combo in schema:
            branches = [check(value, s, doc, where) for s in schema[combo]]
            if any(not errors for errors in branches):
                return []
            best = min(branches, key=len)
            return best or [f"{where}: matches none of {combo}"]
    errors: list[str] = []
    for part in schema.get("allOf", []):
        errors += check(value, part, doc, where)
    kind = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if kind == "null":
        return errors + ([] if value is None else [f"{where}: expected null"])
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return [*errors, f"{where}: expected an integer, got {type(value).__name__}"]
        return errors + _bounds(value, schema, where)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [*errors, f"{where}: expected a number, got {type(value).__name__}"]
        return errors + _bounds(value, schema, where)
    if kind in TYPES and not isinstance(value, TYPES[kind]):
        return [*errors, f"{where}: expected {kind}, got {type(value).__name__}"]
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            errors += check(item, schema["items"], doc, f"{where}[{i}]")
    if isinstance(value, dict) and (kind == "object" or "properties" in schema):
        props = schema.get("properties")
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: required field {name!r} is missing")
        for name, item in value.items():
            if props is None:  # a free-form dict (metadata and the like)
                extra = schema.get("additionalProperties")
                if isinstance(extra, dict):
                    errors += check(item, extra, doc, f"{where}.{name}")
            elif name not in props:
                errors.append(f"{where}: unknown field {name!r}")
            else:
                errors += check(item, props[name], doc, f"{where}.{name}")
    return errors


def _bounds(value: float, schema: dict[str, Any], where: str) -> list[str]:
    if "minimum" in schema and value < schema["minimum"]:
        return [f"{where}: {value} < minimum {schema['minimum']}"]
    if "maximum" in schema and value > schema["maximum"]:
        return [f"{where}: {value} > maximum {schema['maximum']}"]
    return []


def _query_value(raw: str, schema: dict[str, Any], doc: dict[str, Any]) -> Any:
    """A query string value as the schema's type would read it."""
    schema = resolve(schema, doc)
    kinds = [resolve(s, doc).get("type") for s in schema.get("anyOf", [])] or [schema.get("type")]
    if "integer" in kinds and raw.lstrip("-").isdigit():
        return int(raw)
    if "boolean" in kinds and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw


def check_request(method: str, path: str, query: dict[str, str], body: Any,
                  doc: dict[str, Any]) -> list[str]:
    """Every problem with one request, as lines naming where."""
    where = f"{method} {path}"
    operation = doc.get("paths", {}).get(path, {}).get(method.lower())
    if operation is None:
        return [f"{where}: not in the proxy's OpenAPI document"]
    errors = []
    params = {p["name"]: p for p in operation.get("parameters", []) if p.get("in") == "query"}
    for name, raw in query.items():
        if name not in params:
            errors.append(f"{where}: unknown query parameter {name!r}")
            continue
        value = _query_value(str(raw), params[name].get("schema", {}), doc)
        errors += check(value, params[name].get("schema", {}), doc, f"{where}?{name}")
    for name, param in params.items():
        if param.get("required") and name not in query:
            errors.append(f"{where}: required query parameter {name!r} is missing")
    request_body = operation.get("requestBody")
    if method.upper() in ("POST", "PUT", "PATCH"):
        if request_body is None:
            if body not in (None, {}):
                errors.append(f"{where}: sends a body the operation does not take")
        else:
            schema = request_body.get("content", {}).get("application/json", {}).get("schema", {})
            errors += check(body, schema, doc, f"{where} body")
    return errors
