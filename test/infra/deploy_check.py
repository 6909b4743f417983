"""Helper of test/infra/deploy.test.ts, run with the bootstrap venv's python.

    python deploy_check.py yaml FILE...            -> JSON list of [file, document] for every YAML document
    python deploy_check.py compose FILE ENV_FILE   -> JSON {"variables": [...], "config": {...}} or exit 1

``compose`` does what ``docker compose config`` does before validating: it loads the YAML
(anchors and ``<<`` merge keys), interpolates ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
``${VAR:?message}``, ``${VAR?message}`` and ``$$`` with the values of ENV_FILE (an empty value
is replaced by ``example-<name>``, standing in for what an operator fills in), then parses the
result with compose-spec (a strict Compose Specification parser: unknown keys, bad ports,
volumes, conditions or device requests are errors). ``variables`` lists every variable the
file reads, so the test can check ENV_FILE documents each one.
"""

from __future__ import annotations

import json
import re
import sys

import yaml

VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def read_env(path: str) -> dict[str, str]:
    env: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise SystemExit(f"{path}:{lineno}: expected NAME=value")
            name, value = line.split("=", 1)
            env[name.strip()] = value.strip() or f"example-{name.strip().lower()}"
    return env


def interpolate(value, env: dict[str, str], used: set[str], where: str):
    if isinstance(value, dict):
        return {k: interpolate(v, env, used, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, used, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        used.add(name)
        op, arg = m.group(2), m.group(3)
        have = env.get(name)
        empty_counts = op is not None and op.startswith(":")
        missing = have is None or (empty_counts and have == "")
        if op in (":-", "-") and missing:
            return interpolate(arg, env, used, where)
        if op in (":?", "?") and missing:
            raise SystemExit(f"{where}: required variable {name} is not set: {arg}")
        if have is None:
            raise SystemExit(f"{where}: variable {name} is not set and has no default")
        return have

    return VAR.sub(sub, value)


def main(argv: list[str]) -> int:
    if argv[:1] == ["yaml"]:
        out = []
        for path in argv[1:]:
            with open(path, encoding="utf-8") as fh:
                out.extend([path, doc] for doc in yaml.safe_load_all(fh) if doc is not None)
        print(json.dumps(out))
        return 0
    if argv[:1] == ["compose"] and len(argv) == 3:
        from compose_spec import PyCompose

        with open(argv[1], encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
        used: set[str] = set()
        config = interpolate(raw, read_env(argv[2]), used, argv[1])
        try:
            PyCompose.from_json(json.dumps(config))
        except ValueError as exc:
            print(f"{argv[1]}: not a valid Compose file: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"variables": sorted(used), "config": config}))
        return 0
    print("usage: deploy_check.py yaml FILE... | compose FILE ENV_FILE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
