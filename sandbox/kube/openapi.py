"""OpenAPI documents for the kinds the emulator serves (/openapi/v2, /openapi/v3) and the
API server's strict field validation (``?fieldValidation=Strict``) they advertise.
"""

# Why both: kubectl 1.32 validates `kubectl apply` by asking the server. Its validator
# (k8s.io/kubectl pkg/cmd/util/factory_client_access.go Validator, pkg/validation
# ParamVerifyingSchema; k8s.io/cli-runtime pkg/resource query_param_verifier_v3.go) looks in
# /openapi/v3/<group-version> for the kind's PATCH operation, tagged
# x-kubernetes-group-version-kind, with a ``fieldValidation`` query parameter; found, it
# leaves validation to the server and sends ?fieldValidation=Strict. Without the documents
# it stops with "failed to download openapi" unless --validate=false. The server then
# refuses unknown fields: staging/src/k8s.io/apiserver/pkg/endpoints/handlers/rest.go
# transformDecodeError ('<Kind> in version "v1" cannot be handled as a <Kind>: strict
# decoding error: unknown field "spec.foo"'), 400 BadRequest.
#
# The schemas are generated from the kubernetes Python client's models (Apache-2.0; its
# openapi_types/attribute_map are generated from the same Kubernetes OpenAPI spec), so the
# field names are the real ones. Only the v3 PATCH operations omit the strategic-merge
# content type: kubectl then computes apply patches from its built-in types, whose merge
# keys patches.py serves. /openapi/v2 is served as JSON only (clients asking for the
# protobuf encoding alone get 406).

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from typing import Any

from .discovery import RESOURCES, SERVER_VERSION, Resource
from .patches import MERGE_KEYS

Obj = dict[str, Any]

_META = {"ObjectMeta", "LabelSelector", "LabelSelectorRequirement", "ManagedFieldsEntry",
         "OwnerReference", "Time", "MicroTime", "ListMeta", "Status", "StatusDetails",
         "StatusCause", "FieldsV1", "Condition"}
# kind -> python client model (the emulator's served kinds)
_MODELS = {"Namespace": "V1Namespace", "Pod": "V1Pod", "ConfigMap": "V1ConfigMap",
           "Secret": "V1Secret", "Event": "CoreV1Event", "Deployment": "V1Deployment",
           "ReplicaSet": "V1ReplicaSet", "ServiceAccount": "V1ServiceAccount",
           "Service": "V1Service", "StatefulSet": "V1StatefulSet",
           "PodDisruptionBudget": "V1PodDisruptionBudget", "Role": "V1Role",
           "RoleBinding": "V1RoleBinding", "NetworkPolicy": "V1NetworkPolicy",
           "Ingress": "V1Ingress"}
# Definition packages of the non-core models (the real /openapi/v2 names, e.g.
# io.k8s.api.rbac.v1.Role): by name prefix, rbac by exact name (its Subject is the python
# client's RbacV1Subject; "Role" must not catch core names).
_PACKAGES = (
    ("io.k8s.api.apps.v1", ("Deployment", "ReplicaSet", "RollingUpdateDeployment", "StatefulSet",
                            "RollingUpdateStatefulSetStrategy")),
    ("io.k8s.api.policy.v1", ("PodDisruptionBudget",)),
    ("io.k8s.api.networking.v1", ("Ingress", "HTTPIngress", "IPBlock", "NetworkPolicy",
                                  "ServiceBackendPort")),
)
_RBAC = {"Role", "RoleBinding", "RoleRef", "PolicyRule", "Subject", "AggregationRule"}


def _definition_name(model: str) -> str:
    bare = re.sub(r"^(CoreV1|RbacV1|V1|V2|V1beta1)", "", model)
    if bare in _META:
        return f"io.k8s.apimachinery.pkg.apis.meta.v1.{bare}"
    if bare in _RBAC:
        return f"io.k8s.api.rbac.v1.{bare}"
    for package, prefixes in _PACKAGES:
        if bare.startswith(prefixes):
            return f"{package}.{bare}"
    return f"io.k8s.api.core.v1.{bare}"


def _model(name: str) -> Any:
    import kubernetes.client.models as models

    return getattr(models, name, None)


def _type_schema(py_type: str, defs: dict[str, Obj]) -> Obj:
    if py_type in ("str", "datetime", "date", "bytearray"):
        schema: Obj = {"type": "string"}
        if py_type == "datetime":
            schema["format"] = "date-time"
        return schema
    if py_type == "int":
        return {"type": "integer", "format": "int32"}
    if py_type == "float":
        return {"type": "number", "format": "double"}
    if py_type == "bool":
        return {"type": "boolean"}
    if py_type == "object":
        return {"x-kubernetes-int-or-string": True}  # IntOrString and Quantity (free form)
    m = re.fullmatch(r"(?:List|list)\[(.+)\]", py_type)
    if m:
        return {"type": "array", "items": _type_schema(m.group(1), defs)}
    m = re.fullmatch(r"(?:Dict|dict)\[str, (.+)\]|dict\(str, (.+)\)", py_type)
    if m:
        return {"type": "object",
                "additionalProperties": _type_schema(m.group(1) or m.group(2), defs)}
    _collect(py_type, defs)
    return {"$ref": f"#/definitions/{_definition_name(py_type)}"}


def _collect(model_name: str, defs: dict[str, Obj]) -> None:
    name = _definition_name(model_name)
    model = _model(model_name)
    if name in defs or model is None:
        return
    defs[name] = {}  # placeholder against recursion
    props: Obj = {}
    for attr, py_type in model.openapi_types.items():
        field = model.attribute_map[attr]
        prop = _type_schema(py_type, defs)
        merge_key = MERGE_KEYS.get(field)
        if prop.get("type") == "array" and merge_key:
            prop["x-kubernetes-patch-merge-key"] = merge_key
            prop["x-kubernetes-patch-strategy"] = "merge"
        props[field] = prop
    defs[name] = {"type": "object", "properties": props}


@cache
def definitions() -> dict[str, Obj]:
    """Every definition reachable from the served kinds, with their GVK extension."""
    defs: dict[str, Obj] = {}
    for res in RESOURCES:
        model = _MODELS.get(res.kind)
        if model is None:
            continue
        _collect(model, defs)
        defs[_definition_name(model)]["x-kubernetes-group-version-kind"] = [
            {"group": res.group, "kind": res.kind, "version": res.version}]
    return defs


def unknown_fields(kind: str, obj: Any) -> list[str]:
    """Paths of fields the kind's schema does not declare, as the strict decoder names
    them ("spec.template.spec.containers[0].imagee"); ``$``-directives of patches skipped."""
    model = _MODELS.get(kind)
    if model is None:
        return []
    out: list[str] = []
    _walk({"$ref": f"#/definitions/{_definition_name(model)}"}, obj, "", out)
    return out


def _walk(schema: Obj, value: Any, path: str, out: list[str]) -> None:
    if "$ref" in schema:
        schema = definitions().get(schema["$ref"].rsplit("/", 1)[-1]) or {}
    if schema.get("type") == "array" and isinstance(value, list):
        for i, item in enumerate(value):
            _walk(schema.get("items") or {}, item, f"{path}[{i}]", out)
        return
    if schema.get("type") != "object" or not isinstance(value, dict):
        return
    if "additionalProperties" in schema:
        for k, v in value.items():
            _walk(schema["additionalProperties"], v, f"{path}.{k}" if path else k, out)
        return
    props = schema.get("properties") or {}
    for key, item in value.items():
        if key.startswith("$"):
            continue
        where = f"{path}.{key}" if path else key
        if key not in props:
            out.append(where)
        else:
            _walk(props[key], item, where, out)


# ------------------------------------------------------------------------ documents
def _v3_schemas() -> dict[str, Obj]:
    """The v2 definitions with v3 references."""
    text = json.dumps(definitions()).replace("#/definitions/", "#/components/schemas/")
    return dict(json.loads(text))


def _group_path(res: Resource) -> str:
    return f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"


def _operations(res: Resource) -> dict[str, Obj]:
    gvk = {"group": res.group, "kind": res.kind, "version": res.version}
    base = f"/{_group_path(res)}"
    collection = f"{base}/namespaces/{{namespace}}/{res.plural}" if res.namespaced \
        else f"{base}/{res.plural}"
    ref = {"$ref": f"#/components/schemas/{_definition_name(_MODELS[res.kind])}"}
    body = {"application/json": {"schema": ref}}
    validation = {"name": "fieldValidation", "in": "query", "schema": {"type": "string"},
                  "description": "fieldValidation instructs the server on how to handle "
                  "objects in the request containing unknown or duplicate fields."}

    def op(action: str, verb: str, content: Obj | None = None) -> Obj:
        out: Obj = {"operationId": f"{action}{res.kind}", "x-kubernetes-action": verb,
                    "x-kubernetes-group-version-kind": gvk,
                    "responses": {"200": {"description": "OK", "content": body}}}
        if content is not None:
            out["parameters"] = [validation]
            out["requestBody"] = {"content": content, "required": True}
        return out

    patch_types = {t: {"schema": {"type": "object"}} for t in (
        "application/json-patch+json", "application/merge-patch+json",
        "application/apply-patch+yaml")}
    return {
        collection: {"get": op("list", "list"), "post": op("create", "post", body)},
        f"{collection}/{{name}}": {"get": op("read", "get"), "put": op("replace", "put", body),
                                   "patch": op("patch", "patch", patch_types),
                                   "delete": op("delete", "delete")},
    }


def _served_by_group() -> dict[str, list[Resource]]:
    groups: dict[str, list[Resource]] = {}
    for res in RESOURCES:
        if res.kind in _MODELS:
            groups.setdefault(_group_path(res), []).append(res)
    return groups


@cache
def v3_document(group_path: str) -> Obj | None:
    served = _served_by_group().get(group_path)
    if not served:
        return None
    paths: Obj = {}
    for res in served:
        paths.update(_operations(res))
    return {"openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": _v3_schemas()}}


def v3_index() -> Obj:
    """/openapi/v3: one entry per group-version with a content hash in its URL."""
    paths = {}
    for group_path in _served_by_group():
        digest = hashlib.sha512(json.dumps(v3_document(group_path), sort_keys=True)
                                .encode()).hexdigest()[:128].upper()
        paths[group_path] = {"serverRelativeURL": f"/openapi/v3/{group_path}?hash={digest}"}
    return {"paths": paths}


def _v2_operations(res: Resource) -> dict[str, Obj]:
    """The same operations in Swagger 2.0 terms (query/body parameters, consumes)."""
    out: dict[str, Obj] = {}
    for path, ops in _operations(res).items():
        out[path] = {}
        for method, op in ops.items():
            v2: Obj = {k: v for k, v in op.items() if k not in ("requestBody", "responses",
                                                                "parameters")}
            ref = f"#/definitions/{_definition_name(_MODELS[res.kind])}"
            v2["responses"] = {"200": {"description": "OK", "schema": {"$ref": ref}}}
            if "requestBody" in op:
                v2["consumes"] = list(op["requestBody"]["content"])
                v2["parameters"] = [
                    {"name": "body", "in": "body", "required": True,
                     "schema": {"$ref": ref} if method != "patch" else {"type": "object"}},
                    {"name": "fieldValidation", "in": "query", "type": "string",
                     "uniqueItems": True}]
            out[path][method] = v2
    return out


@cache
def v2_document() -> Obj:
    paths: Obj = {}
    for res in RESOURCES:
        if res.kind in _MODELS:
            paths.update(_v2_operations(res))
    return {"swagger": "2.0",
            "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
            "paths": paths, "definitions": definitions()}
