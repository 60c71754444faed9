#!/usr/bin/env python3
"""Validates docker-compose.yml without a Docker engine (run by scripts/lint-docker.sh).

1. Interpolates ${VAR:-default} and the other Compose forms with an EMPTY environment, so what
   is checked is the file as a user without any variable set gets it.
2. Validates the result against the Compose Specification JSON schema (docker/compose-spec/).
3. Checks this project's rules, which the schema cannot express:
   - every ${VAR} has its default in the compose file (`${VAR:-default}`): the one place;
   - docs/docker.md has a table row for every variable, with the same default;
   - published ports are bound to 127.0.0.1;
   - depends_on names services that exist; build contexts, Dockerfiles, build targets and
     bind-mounted files exist.
Exits 1 on any finding, printing each one.
"""

import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "docker" / "compose-spec" / "compose-spec.json"
DOC = ROOT / "docs" / "docker.md"

# $$ (a literal $), ${NAME<op>arg}, ${NAME}, $NAME. Nested ${...} in arg is not used here.
TOKEN = re.compile(
    r"\$(?:(?P<dollar>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<bad>))"
)

findings = []
variables = {}  # name -> default ("" when none)


def finding(msg):
    findings.append(msg)


def interpolate(value, where):
    def repl(m):
        if m.group("dollar"):
            return "$"
        if m.group("bad") is not None:
            finding(f"{where}: invalid interpolation near {value[m.start():m.start() + 10]!r}")
            return ""
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg")
        if op in (":-", "-"):
            if "$" in arg:
                finding(f"{where}: nested interpolation in the default of {name} is not supported here")
            variables.setdefault(name, arg)
            if variables[name] != arg:
                finding(f"{where}: {name} has two defaults, {variables[name]!r} and {arg!r}")
            return arg
        finding(f"{where}: ${{{name}}} has no default: write ${{{name}:-default}}")
        variables.setdefault(name, "")
        return ""

    return TOKEN.sub(repl, value)


def walk(node, path):
    if isinstance(node, dict):
        return {k: walk(v, f"{path}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str):
        return interpolate(node, path)
    return node


def check_schema(doc):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in err.path) or "<root>"
        finding(f"schema: {where}: {err.message}")


def check_rules(doc):
    services = doc.get("services", {})
    for name, svc in services.items():
        for port in svc.get("ports", []):
            text = port if isinstance(port, str) else port.get("host_ip", "")
            if not str(text).startswith("127.0.0.1"):
                finding(f"services.{name}.ports: {port!r} is not bound to 127.0.0.1")
        deps = svc.get("depends_on", {})
        for dep in deps if isinstance(deps, (list, dict)) else []:
            if dep not in services:
                finding(f"services.{name}.depends_on: no service {dep!r}")
        build = svc.get("build")
        if isinstance(build, str):
            build = {"context": build}
        if build:
            context = ROOT / build.get("context", ".")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not context.is_dir():
                finding(f"services.{name}.build.context: {context} is not a folder")
            elif not dockerfile.is_file():
                finding(f"services.{name}.build.dockerfile: {dockerfile} does not exist")
            elif "target" in build:
                stages = re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)\s*$", dockerfile.read_text())
                if build["target"] not in stages:
                    finding(f"services.{name}.build.target: no stage {build['target']!r} in {dockerfile.name} ({', '.join(stages)})")
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith((".", "/")) and not (ROOT / source).exists():
                finding(f"services.{name}.volumes: {source} does not exist")
            elif source and not source.startswith((".", "/")) and source not in (doc.get("volumes") or {}):
                finding(f"services.{name}.volumes: named volume {source!r} is not declared")


def check_doc():
    if not DOC.is_file():
        finding(f"{DOC.relative_to(ROOT)} does not exist")
        return
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("|")]
    for name, default in sorted(variables.items()):
        row = next((r for r in rows if f"`{name}`" in r), None)
        if row is None:
            finding(f"docs/docker.md: no table row for `{name}`")
        elif f"`{default}`" not in row:
            finding(f"docs/docker.md: the row of `{name}` does not show its default `{default}`")


def main():
    raw = yaml.safe_load(COMPOSE.read_text())
    if not isinstance(raw, dict):
        print(f"{COMPOSE.name}: not a mapping", file=sys.stderr)
        return 1
    doc = walk(raw, "")
    check_schema(doc)
    check_rules(doc)
    check_doc()
    for f in findings:
        print(f"{COMPOSE.name}: {f}", file=sys.stderr)
    if findings:
        return 1
    print(f"{COMPOSE.name}: valid against the Compose Specification schema; "
          f"{len(doc.get('services', {}))} services, variables: {', '.join(sorted(variables))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
