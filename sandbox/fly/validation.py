"""Request bodies of the Machines API checked against Fly's OpenAPI document (the request
schemas of Machines_update, Machines_create_lease and Machines_stop), as the API's JSON
decoding refuses them: HTTP 400 with the decoder's message.
"""

# flaps is a Go service: a body is decoded into the request struct with encoding/json, which
# fails on malformed JSON and on a value of the wrong type ("json: cannot unmarshal string
# into Go struct field ... of type int"), answered 400 with ErrorResponse{error}. An unknown
# field is ignored by encoding/json unless the decoder disallows it, and nothing in the spec
# or in fly-go says flaps does, so unknown fields pass here too. The document is read from
# ``FLY_MACHINES_OPENAPI``, else from ``SPECS_DIR`` (the directory of vendor specs the tests
# use, tests/support/specs.py) or shared/specs beside the repository; when it is absent the
# emulator falls back to the small embedded schema below (the fields our clients send) and
# says so in ``SchemaSource.origin``.

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .state import FlyError

SPEC_ENV = "FLY_MACHINES_OPENAPI"
SPECS_DIR_ENV = "SPECS_DIR"
SPEC_NAME = "fly-machines-openapi.yaml"
DEFAULT_SPEC = Path(__file__).resolve().parents[3] / "shared" / "specs" / SPEC_NAME

# Used only when the spec is not there: the request schemas this emulator's clients send.
_EMBEDDED: dict[str, Any] = {
    "UpdateMachineRequest": {"type": "object", "properties": {
        "config": {"$ref": "#/components/schemas/api.MachineConfig"},
        "current_version": {"type": "string"}, "lease_ttl": {"type": "integer"},
        "name": {"type": "string"}, "region": {"type": "string"},
        "skip_launch": {"type": "boolean"}, "skip_service_registration": {"type": "boolean"}}},
    "api.MachineConfig": {"type": "object", "properties": {
        "image": {"type": "string"}, "env": {"type": "object",
                                             "additionalProperties": {"type": "string"}},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "guest": {"type": "object", "properties": {
            "cpu_kind": {"type": "string"}, "cpus": {"type": "integer"},
            "memory_mb": {"type": "integer"}}},
        "services": {"type": "array", "items": {"type": "object"}},
        "checks": {"type": "object", "additionalProperties": {"type": "object"}},
        "restart": {"type": "object", "properties": {
            "policy": {"type": "string", "enum": ["no", "always", "on-failure"]},
            "max_retries": {"type": "integer"}}}}},
    "CreateLeaseRequest": {"type": "object", "properties": {
        "description": {"type": "string"}, "ttl": {"type": "integer"}}},
    "StopRequest": {"type": "object", "properties": {
        "signal": {"type": "string"}, "timeout": {"type": "string"}}},
}

_GO_TYPES = {"integer": "int", "number": "float64", "string": "string", "boolean": "bool",
             "array": "[]", "object": "struct"}
# encoding/json names the JSON value it found: "string", "number", "bool", "array", "object"
_JSON_NAMES = {"integer": "number", "number": "number", "boolean": "bool"}


@dataclass(frozen=True)
class SchemaSource:
    """The component schemas in use and where they came from."""

    schemas: dict[str, Any]
    origin: str


def load_schemas(path: str | os.PathLike[str] | None = None) -> SchemaSource:
    specs_dir = os.environ.get(SPECS_DIR_ENV)
    spec_path = Path(path or os.environ.get(SPEC_ENV)
                     or (Path(specs_dir) / SPEC_NAME if specs_dir else DEFAULT_SPEC))
    if spec_path.is_file():
        document = yaml.safe_load(spec_path.read_text())
        return SchemaSource(dict(document["components"]["schemas"]), str(spec_path))
    return SchemaSource(dict(_EMBEDDED), f"embedded minimal schema ({spec_path} not found)")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


class BodyValidator:
    """``check(schema_name, body)`` raises FlyError(400) the way the Go decoder would."""

    def __init__(self, source: SchemaSource) -> None:
        self.source = source

    def check(self, schema_name: str, body: Any) -> None:
        if body is None:
            return  # an empty body decodes to the zero value
        self._check({"$ref": f"#/components/schemas/{schema_name}"}, body, schema_name)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.source.schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
        for part in schema.get("allOf") or ():
            merged = dict(self._resolve(part))
            merged.update({k: v for k, v in schema.items() if k != "allOf"})
            schema = merged
        return schema

    def _check(self, schema: dict[str, Any], value: Any, where: str) -> None:
        schema = self._resolve(schema)
        if value is None:
            return  # JSON null leaves a Go field at its zero value
        wanted = schema.get("type")
        got = _json_type(value)
        if wanted and got != wanted and not (wanted == "number" and got == "integer"):
            raise FlyError(400, f"json: cannot unmarshal {_JSON_NAMES.get(got, got)} into Go "
                                f"struct field {where} "
                                f"of type {_GO_TYPES.get(str(wanted), wanted)}")
        if "enum" in schema and value not in schema["enum"]:
            raise FlyError(400, f"invalid value {value!r} for {where}: one of "
                                f"{', '.join(map(str, schema['enum']))}")
        if got == "object":
            properties = schema.get("properties") or {}
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                if key in properties:
                    self._check(properties[key], item, f"{where}.{key}")
                elif isinstance(extra, dict):
                    self._check(extra, item, f"{where}.{key}")
        elif got == "array" and isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                self._check(schema["items"], item, f"{where}[{index}]")
