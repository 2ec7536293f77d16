"""The compatibility gate: inside one version of an event, schemas may only grow.

Breaking (needs a new version beside the old one): a field removed, a field newly required, a type
narrowed (a different type, fewer enum values, a new const, format or pattern, tighter bounds), an
event type removed. Compatible: a new optional field, more enum values, looser bounds.

Consumers decode ignoring fields they do not know, so a new optional field reaches an older
consumer harmlessly; a new code in a code list does not, so consumers update their contracts
before producers emit it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems")
UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"external $ref {ref} is not supported")
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _alternatives(schema: dict, root: dict) -> list[dict]:
    schema = _resolve(schema, root)
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        return [alt for v in variants for alt in _alternatives(v, root)]
    return [schema]


def _compare_one(old: dict, new: dict, old_root: dict, new_root: dict, path: str) -> list[str]:
    problems = []
    old_type, new_type = old.get("type"), new.get("type")
    if old_type != new_type and not (old_type == "integer" and new_type == "number"):
        return [f"{path}: type narrowed from {old_type or 'any'} to {new_type or 'any'}"]
    if "enum" in old or "enum" in new:
        removed = set(old.get("enum", [])) - set(new.get("enum", [])) if "enum" in new else set()
        if "enum" in new and "enum" not in old:
            problems.append(f"{path}: type narrowed to an enum")
        elif removed:
            problems.append(f"{path}: enum values removed: {', '.join(sorted(map(str, removed)))}")
    if "const" in new and new.get("const") != old.get("const"):
        problems.append(f"{path}: type narrowed to the constant {new['const']!r}")
    for key in ("format", "pattern"):
        if key in new and new[key] != old.get(key):
            problems.append(f"{path}: {key} narrowed to {new[key]!r}")
    for key in LOWER_BOUNDS:
        if key in new and (key not in old or new[key] > old[key]):
            problems.append(f"{path}: {key} raised to {new[key]}")
    for key in UPPER_BOUNDS:
        if key in new and (key not in old or new[key] < old[key]):
            problems.append(f"{path}: {key} lowered to {new[key]}")
    if old_type == "object" or "properties" in old:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        for name in old_props:
            if name not in new_props:
                problems.append(f"{path}.{name}: field removed")
            else:
                problems += compare(old_props[name], new_props[name], old_root, new_root, f"{path}.{name}")
        for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
            problems.append(f"{path}.{name}: field newly required")
    if old_type == "array":
        if "items" in old and "items" in new:
            problems += compare(old["items"], new["items"], old_root, new_root, f"{path}[]")
        old_prefix, new_prefix = old.get("prefixItems", []), new.get("prefixItems", [])
        for i, (o, n) in enumerate(zip(old_prefix, new_prefix)):
            problems += compare(o, n, old_root, new_root, f"{path}[{i}]")
    return problems


def compare(old: dict, new: dict, old_root: dict | None = None, new_root: dict | None = None,
            path: str = "$") -> list[str]:
    """Reasons a record valid under `old` may be refused, or misread, under `new`; empty if none."""
    old_root = old_root if old_root is not None else old
    new_root = new_root if new_root is not None else new
    new_alts = _alternatives(new, new_root)
    problems: list[str] = []
    for old_alt in _alternatives(old, old_root):
        candidates = [_compare_one(old_alt, n, old_root, new_root, path) for n in new_alts]
        if not any(not c for c in candidates):
            problems += min(candidates, key=len)
    return problems


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def schemas_at(revision: str, contracts_dir: Path) -> dict[str, dict] | None:
    """The schemas as committed at `revision`; None when that revision does not exist."""
    contracts_dir = contracts_dir.resolve()
    top = Path(_git("rev-parse", "--show-toplevel", cwd=contracts_dir).strip())
    prefix = (contracts_dir / "schemas").relative_to(top).as_posix()
    try:
        _git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", cwd=top)
    except subprocess.CalledProcessError:
        return None
    names = _git("ls-tree", "--name-only", f"{revision}:{prefix}", cwd=top).split() \
        if _has_path(top, revision, prefix) else []
    return {name: json.loads(_git("show", f"{revision}:{prefix}/{name}", cwd=top)) for name in names}


def _has_path(top: Path, revision: str, path: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{revision}:{path}"], cwd=top,
                          capture_output=True).returncode == 0


def breaking_changes(old: dict[str, dict], new: dict[str, dict]) -> list[str]:
    problems = []
    for name, old_schema in sorted(old.items()):
        if name not in new:
            problems.append(f"{name}: event type removed (keep it until no producer or consumer uses it)")
            continue
        problems += [f"{name}: {p}" for p in compare(old_schema, new[name])]
    return problems


def current_schemas(contracts_dir: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((contracts_dir / "schemas").glob("*.json"))}


def breaking_changes_against(revision: str, contracts_dir: Path) -> list[str]:
    old = schemas_at(revision, contracts_dir)
    return breaking_changes(old or {}, current_schemas(contracts_dir))
