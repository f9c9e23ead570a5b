"""Write the typed module of an offload API from its OpenAPI schema: `python -m offload_client.generate`.

`python -m offload_client.generate SOURCE [--out FILE]` reads the schema from a URL
(`https://.../openapi.json`), a file, or `-` (standard input) and writes a module of pydantic models
(the API's answers), TypedDicts (each job's input and the enqueue options) and `Jobs`, one typed
method per job. The package's own `generated.py` is this for offload's example catalogue (`make
client`); a test regenerates it from the app's live /openapi.json and fails if they differ.
"""

from __future__ import annotations

import argparse
import json
import keyword
import sys
import textwrap
from pathlib import Path
from typing import Any

from offload_client.schema import (
    JobOperations,
    Schema,
    SchemaError,
    job_operations,
    ordered,
    query,
    query_parameters,
    read,
    response_refs,
)

HEADER = '''"""offload's API as typed Python, generated from its OpenAPI schema.

Do not edit: `python -m offload_client.generate` writes it (`make client`, from the app's
/openapi.json); tests/unit/test_client_generate.py fails when the schema and this file differ.
"""

from __future__ import annotations

'''
# Names a job's input may not use: the per-job methods take these as their own keywords.
LINE_LENGTH = 110  # the repository's, so ruff leaves the module as written
RESERVED = frozenset({"self", "options", "idempotency_key"})
JSON_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}
FORMATS = {"date-time": "datetime", "date": "date"}


def generate(schema: Schema) -> str:
    """The module's source for this OpenAPI schema."""
    writer = _Writer(schema["components"]["schemas"])
    jobs = list(job_operations(schema))
    if not jobs:
        raise SchemaError("the schema has no enqueue operations (POST /jobs/{name})")
    for job in jobs[1:]:  # the options are the catalogue's, not a job's: one TypedDict serves all
        for kind in ("single", "batch"):
            if query_parameters(getattr(job, kind)) != query_parameters(getattr(jobs[0], kind)):
                raise SchemaError(f"{job.name}'s {kind} enqueue has options other jobs lack")
    body = [
        *(writer.model(name) for name in ordered(writer.components, response_refs(schema))),
        writer.literal("Queue", query(jobs[0].single, "queue")),
        writer.literal("Status", query(schema["paths"]["/jobs"]["get"], "status")),
        writer.options("EnqueueOptions", jobs[0].single, "POST /jobs/{name}"),
        writer.options("BatchOptions", jobs[0].batch, "POST /jobs/{name}/batch"),
        *(writer.input(job) for job in jobs),
        _jobs_class(jobs),
        "JOB_NAMES = (\n" + "".join(f"    {_py(job.name)},\n" for job in jobs) + ")",
    ]
    writer.used |= {"Any", "Callable", "Generic", "Mapping", "Sequence", "TypeVar", "Unpack"}  # for Jobs
    return HEADER + "\n".join(writer.imports()) + "\n\n\n" + "\n\n\n".join(body) + "\n"


class _Writer:
    """Renders schemas as Python, and remembers what the rendering imports."""

    def __init__(self, components: dict[str, Schema]) -> None:
        self.components = components
        self.used: set[str] = set()

    def imports(self) -> list[str]:
        lines = []
        for module, names in (
            ("collections.abc", ("Callable", "Mapping", "Sequence")),
            ("datetime", ("date", "datetime")),
            ("typing", ("Any", "Generic", "Literal", "Required", "TypedDict", "TypeVar", "Unpack")),
        ):
            wanted = [name for name in names if name in self.used]
            if wanted:
                lines.append(f"from {module} import {', '.join(wanted)}")
        return [*lines, "", "from pydantic import BaseModel"]

    def type(self, schema: Schema, *, inputs: bool = False) -> str:
        """A schema as an annotation; `inputs` ones take any sequence where a list is asked for."""
        if "$ref" in schema:
            name = str(schema["$ref"]).rsplit("/", 1)[1]
            if not inputs:
                return name
            self.used.add("Any")  # a model inside an input: sent as JSON, typed loosely
            return "dict[str, Any]"
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return " | ".join(dict.fromkeys(self.type(s, inputs=inputs) for s in schema[key]))
        if "enum" in schema or "const" in schema:
            self.used.add("Literal")
            values = schema.get("enum", [schema.get("const")])
            return f"Literal[{', '.join(map(_py, values))}]"
        kind = schema.get("type")
        if isinstance(kind, list):
            return " | ".join(self.type({**schema, "type": k}, inputs=inputs) for k in kind)
        if kind == "string" and schema.get("format") in FORMATS:
            self.used.add(FORMATS[schema["format"]])
            return FORMATS[schema["format"]]
        if kind in JSON_TYPES:
            return JSON_TYPES[kind]
        if kind == "array":
            if "prefixItems" in schema:
                return f"tuple[{', '.join(self.type(s, inputs=inputs) for s in schema['prefixItems'])}]"
            item = self.type(schema.get("items", {}), inputs=inputs)
            if not inputs:
                return f"list[{item}]"
            self.used.add("Sequence")
            return f"Sequence[{item}]"
        self.used.add("Any")
        values = schema.get("additionalProperties")
        if kind == "object" and isinstance(values, dict):
            return f"dict[str, {self.type(values, inputs=inputs)}]"
        return "dict[str, Any]" if kind == "object" else "Any"

    def model(self, name: str) -> str:
        schema = self.components[name]
        required = set(schema.get("required", []))
        head = [
            f"class {name}(BaseModel):",
            *_doc(schema.get("description") or f"{name}, as the API shows it."),
        ]
        lines: list[str] = []
        for field, spec in schema.get("properties", {}).items():
            _check_name(name, field)
            annotation = self.type(spec)
            if field in required:
                lines.append(f"    {field}: {annotation}")
            elif "default" in spec:
                lines.append(f"    {field}: {annotation} = {_py(spec['default'])}")
            elif spec.get("type") in ("array", "object"):
                lines.append(f"    {field}: {annotation} = {[] if spec['type'] == 'array' else {}}")
            else:
                nullable = annotation if "None" in annotation.split(" | ") or annotation == "Any" else None
                lines.append(f"    {field}: {nullable or annotation + ' | None'} = None")
            lines += _doc(spec.get("description"))
        return _class(head, lines)

    def literal(self, name: str, schema: Schema) -> str:
        values = next(s["enum"] for s in schema.get("anyOf", [schema]) if "enum" in s)
        self.used.add("Literal")
        line = f"{name} = Literal[{', '.join(map(_py, values))}]"
        if len(line) <= LINE_LENGTH:
            return line
        # one value a line, with a trailing comma: as ruff formats a long one
        return "\n".join([f"{name} = Literal[", *(f"    {_py(value)}," for value in values), "]"])

    def options(self, name: str, operation: Schema, route: str) -> str:
        self.used.add("TypedDict")
        head = [f"class {name}(TypedDict, total=False):", *_doc(f"The options of {route}; none is required.")]
        lines: list[str] = []
        for parameter in query_parameters(operation):
            spec = parameter["schema"]
            if parameter["name"] == "queue":
                annotation = "Queue"
            else:  # an option left out is the server's default: no need to send null
                types = [s for s in spec.get("anyOf", [spec]) if s.get("type") != "null"]
                annotation = self.type(types[0] if len(types) == 1 else {"anyOf": types}, inputs=True)
            lines += [f"    {parameter['name']}: {annotation}", *_doc(parameter.get("description"))]
        return _class(head, lines)

    def input(self, job: JobOperations) -> str:
        schema = self.components[job.input]
        required = set(schema.get("required", []))
        self.used |= {"TypedDict", "Required"} if required else {"TypedDict"}
        head = [f"class {job.input}(TypedDict, total=False):", *_doc(f"The input of `{job.name}`.")]
        lines: list[str] = []
        for field, spec in schema.get("properties", {}).items():
            _check_name(job.input, field)
            if field in RESERVED:
                raise SchemaError(f"{job.name}'s input has {field!r}, a name its method needs for itself")
            annotation = self.type(spec, inputs=True)
            lines.append(
                f"    {field}: Required[{annotation}]" if field in required else f"    {field}: {annotation}"
            )
            lines += _doc(_field_note(spec))
        return _class(head, lines)


def _class(head: list[str], fields: list[str]) -> str:
    """A class: its line and docstring, then a blank line and its fields, if it has any."""
    return "\n".join([*head, "", *fields] if fields else head)


def _field_note(spec: Schema) -> str | None:
    """A field's description, default and bounds, as its docstring says them."""
    notes = [spec["description"]] if spec.get("description") else []
    if "default" in spec:
        notes.append(f"Default: {_py(spec['default'])}.")
    keys = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "minLength", "maxLength")
    bounds = [f"{key} {_bound(spec[key])}" for key in (*keys, "minItems", "maxItems") if key in spec]
    if bounds:
        notes.append(f"Bounds: {', '.join(bounds)}.")
    return " ".join(notes) or None


def _check_name(owner: str, field: str) -> None:
    if not field.isidentifier() or keyword.iskeyword(field) or field.startswith("model_"):
        raise SchemaError(f"{owner}.{field} cannot be a Python field name")


def _doc(text: str | None, indent: str = "    ") -> list[str]:
    """A docstring's lines, wrapped to the repository's line length, as ruff format leaves them."""
    if not text:
        return []
    text = " ".join(text.split()).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if len(indent) + len(text) + 6 <= LINE_LENGTH:
        return [f'{indent}"""{text}"""']
    lines = textwrap.wrap(text, LINE_LENGTH - len(indent) - 3, break_on_hyphens=False)  # 3: the quotes
    return [f'{indent}"""{lines[0]}', *(indent + line for line in lines[1:]), f'{indent}"""']


def _py(value: Any) -> str:
    """A JSON value as Python source, quoted as ruff format quotes it."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return f"[{', '.join(map(_py, value))}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _bound(value: Any) -> str:
    # pydantic writes an int field's bounds as floats (`le=100` becomes 100.0).
    return str(int(value)) if isinstance(value, float) and value.is_integer() else _py(value)


JOBS_PREAMBLE = '''One = TypeVar("One")
Many = TypeVar("Many")
# How a client enqueues: (job name, input or inputs, options, Idempotency-Key) -> its answer.
EnqueueOne = Callable[[str, Mapping[str, Any], EnqueueOptions | None, str | None], One]
EnqueueMany = Callable[[str, Sequence[Mapping[str, Any]], BatchOptions | None, str | None], Many]


class Jobs(Generic[One, Many]):
    """One method per job: `client.jobs.word_count(text="...")` (with AsyncClient, awaited)."""

    def __init__(self, enqueue: EnqueueOne[One], enqueue_batch: EnqueueMany[Many]) -> None:
        self._enqueue = enqueue
        self._enqueue_batch = enqueue_batch
'''

JOB_METHODS = '''
    def {name}(
        self,
        *,
        options: EnqueueOptions | None = None,
        idempotency_key: str | None = None,
        **input: Unpack[{input}],
    ) -> One:
{doc}
        return self._enqueue("{name}", input, options, idempotency_key)

    def {name}_batch(
        self,
        inputs: Sequence[{input}],
        *,
        options: BatchOptions | None = None,
        idempotency_key: str | None = None,
    ) -> Many:
        """A batch of `{name}`: one job per input, all enqueued or none."""
        return self._enqueue_batch("{name}", inputs, options, idempotency_key)
'''


def _jobs_class(jobs: list[JobOperations]) -> str:
    methods = (
        JOB_METHODS.format(name=job.name, input=job.input, doc="\n".join(_doc(job.description, " " * 8)))
        for job in jobs
    )
    return JOBS_PREAMBLE + "".join(methods).rstrip()


def main(argv: list[str] | None = None) -> int:
    """Generate from SOURCE (a URL, a file or `-`) into --out, or print it."""
    parser = argparse.ArgumentParser(prog="python -m offload_client.generate", description=__doc__)
    parser.add_argument("source", help="the schema: an /openapi.json URL, a file, or - for standard input")
    parser.add_argument("--out", type=Path, help="the module to write (default: print it)")
    args = parser.parse_args(argv)
    source = generate(read(args.source))
    if args.out is None:
        sys.stdout.write(source)
    else:
        args.out.write_text(source)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
