"""Checks requests made to the fake Datadog API against Datadog's official OpenAPI spec.

Usage: openapi_check.py SPEC.json [SPEC.json ...] < requests.json
requests.json: [{"method": "GET", "target": "/api/v1/monitor?name=x", "body": "..." | null}, ...]

Each request must match an operation of a spec (method and path), carry only the query parameters
the operation declares, each of its declared type, all required ones, and a JSON body that fits the
operation's request schema. The spec leaves most objects open (`additionalProperties` unset) and
Datadog ignores a field it does not know, which silently drops what the client meant: so every
object schema that lists its `properties` is closed here, and read-only properties are removed
from request schemas (sending one is an error). `nullable: true` (OpenAPI 3.0) becomes a null type.
Prints one line per problem; exits 1 when there is any, 0 when every request fits.
"""

import json
import re
import sys
from urllib.parse import parse_qsl, unquote

import jsonschema


def for_requests(node):
    """The schema as JSON Schema draft 4 for what a client sends (see the module's docstring)."""
    if isinstance(node, list):
        return [for_requests(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {
                name: for_requests(prop)
                for name, prop in value.items()
                if not (isinstance(prop, dict) and prop.get("readOnly"))
            }
        elif key in ("example", "examples", "description", "discriminator", "x-enum-varnames"):
            continue
        else:
            out[key] = for_requests(value)
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = list(out["enum"]) + [None]
        else:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


def deref(doc, node):
    """A `$ref` to `#/components/...` followed inside `doc`."""
    while isinstance(node, dict) and "$ref" in node:
        target = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


class Spec:
    def __init__(self, path):
        with open(path) as f:
            whole = json.load(f)
        self.docs = [whole[v] for v in ("v1", "v2") if v in whole]
        self.operations = []
        for doc in self.docs:
            components = for_requests(doc.get("components", {}))
            for template, item in doc["paths"].items():
                pattern = re.compile(
                    "^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$"
                )
                names = re.findall(r"\{([^}]+)\}", template)
                shared = item.get("parameters", [])
                for method, op in item.items():
                    if method == "parameters":
                        continue
                    self.operations.append(
                        (method.upper(), pattern, names, template, doc, components, shared, op)
                    )


def validator(components, schema):
    root = {"allOf": [for_requests(schema)], "components": components}
    return jsonschema.Draft4Validator(root)


def coerce(value, schema):
    kind = schema.get("type")
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            return value
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, value)
    return value


def check(specs, request):
    method = request["method"]
    target = request["target"]
    path, _, query = target.partition("?")
    label = f"{method} {target}"
    found = None
    for spec in specs:
        for op in spec.operations:
            m = op[1].match(path)
            if m and op[0] == method:
                found = (op, m)
                break
        if found:
            break
    if not found:
        return [f"{label}: no operation of the spec is {method} {path}"]
    (_, _, names, template, doc, components, shared, op), match = found
    problems = []
    params = {}
    for p in shared + op.get("parameters", []):
        p = deref(doc, p)
        params[(p["in"], p["name"])] = p
    for name, raw in zip(names, match.groups()):
        p = params.get(("path", name))
        if p is None:
            problems.append(f"{label}: path parameter {name} is not declared")
            continue
        value = coerce(unquote(raw), deref(doc, p.get("schema", {})))
        for e in validator(components, p.get("schema", {})).iter_errors(value):
            problems.append(f"{label}: path parameter {name}={raw!r}: {e.message}")
    given = parse_qsl(query, keep_blank_values=True, strict_parsing=False) if query else []
    seen = set()
    for name, value in given:
        seen.add(name)
        p = params.get(("query", name))
        if p is None:
            problems.append(f"{label}: query parameter {name!r} is not declared for {method} {template}")
            continue
        schema = p.get("schema", {})
        value = coerce(value, deref(doc, schema))
        for e in validator(components, schema).iter_errors(value):
            problems.append(f"{label}: query parameter {name}={value!r}: {e.message}")
    for (where, name), p in params.items():
        if where == "query" and p.get("required") and name not in seen:
            problems.append(f"{label}: required query parameter {name!r} is missing")
    body = request.get("body")
    declared = op.get("requestBody")
    if declared is None:
        if body:
            problems.append(f"{label}: a body, but {method} {template} takes none")
        return problems
    declared = deref(doc, declared)
    if not body:
        if declared.get("required"):
            problems.append(f"{label}: the body is required")
        return problems
    content = declared.get("content", {}).get("application/json")
    if content is None:
        return problems + [f"{label}: the operation takes no JSON body"]
    try:
        value = json.loads(body)
    except ValueError as e:
        return problems + [f"{label}: the body is not JSON ({e})"]
    for e in sorted(
        validator(components, content["schema"]).iter_errors(value), key=lambda e: list(e.path)
    ):
        where = "/".join(str(p) for p in e.absolute_path) or "(the body)"
        detail = e.message
        if e.context:
            # A oneOf: the complaints of the branch whose `type` the value has (a widget's, a
            # query's), else of the branch with the fewest.
            branches = {}
            for c in e.context:
                branches.setdefault(c.relative_schema_path[0], []).append(c)
            def type_mismatch(errors):
                return any(list(c.relative_path)[-1:] == ["type"] or "'type'" in c.message for c in errors)
            chosen = min(branches.values(), key=lambda errs: (type_mismatch(errs), len(errs)))
            detail = "; ".join(
                f"{'/'.join(str(p) for p in c.absolute_path)}: {c.message[:300]}" for c in chosen
            )
        problems.append(f"{label}: body {where}: {detail}")
    return problems


def main():
    specs = [Spec(path) for path in sys.argv[1:]]
    requests = json.load(sys.stdin)
    problems = []
    for request in requests:
        problems.extend(check(specs, request))
    for p in problems:
        print(p)
    print(f"{len(requests)} requests checked, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
