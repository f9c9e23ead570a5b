"""Reading an offload OpenAPI schema: its jobs' enqueue operations, and the components it answers with."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Schema = dict[str, Any]


class SchemaError(ValueError):
    """The schema is not one this generator can turn into a typed client."""


@dataclass(frozen=True)
class JobOperations:
    """One job's two enqueue operations, as the schema declares them."""

    name: str
    description: str
    input: str  # the component of its input model
    single: Schema
    batch: Schema


def job_operations(schema: Schema) -> Iterator[JobOperations]:
    """Every job: a path `/jobs/<name>` whose POST is operation `enqueue_<name>`, and its batch."""
    paths: dict[str, Schema] = schema["paths"]
    for path, item in sorted(paths.items()):
        name = path.removeprefix("/jobs/")
        single = item.get("post", {})
        if single.get("operationId") != f"enqueue_{name}":
            continue
        body = single["requestBody"]["content"]["application/json"]["schema"]
        ref = next((s["$ref"] for s in body.get("anyOf", [body]) if "$ref" in s), None)
        if ref is None:
            raise SchemaError(f"{path}: the body is not a component")
        yield JobOperations(
            name, single.get("description", ""), ref.rsplit("/", 1)[1], single, paths[f"{path}/batch"]["post"]
        )


def query_parameters(operation: Schema) -> list[Schema]:
    return [p for p in operation.get("parameters", []) if p["in"] == "query"]


def query(operation: Schema, name: str) -> Schema:
    return next(p["schema"] for p in query_parameters(operation) if p["name"] == name)


def response_refs(schema: Schema) -> set[str]:
    """The components the API answers with (2xx bodies): they become pydantic models."""
    found: set[str] = set()
    for item in schema["paths"].values():
        for operation in item.values():
            for code, response in operation.get("responses", {}).items():
                if code.startswith("2"):
                    found |= set(refs(response.get("content", {})))
    return found


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"].rsplit("/", 1)[1]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def ordered(components: dict[str, Schema], roots: set[str]) -> list[str]:
    """The models these roots need, each after the models its fields name."""
    done: list[str] = []

    def visit(name: str) -> None:
        if name not in done:
            for ref in sorted(set(refs(components[name]))):
                visit(ref)
            done.append(name)

    for name in sorted(roots):
        visit(name)
    return done


def read(source: str) -> Schema:
    if source == "-":
        return dict(json.load(sys.stdin))
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as response:  # noqa: S310  (http(s) only)
            return dict(json.load(response))
    return dict(json.loads(Path(source).read_text()))
