"""Deployment validation the API server applies after defaulting: 422 Invalid with one
cause per field, worded and rendered as kubernetes/kubernetes does it.
"""

# pkg/apis/apps/validation/validation.go: ValidateDeploymentSpec (selector required and
# non-empty, selector must match the template labels, progressDeadlineSeconds >
# minReadySeconds, non-negative counts), ValidateDeploymentStrategy /
# ValidateRollingUpdateDeployment (rollingUpdate forbidden with Recreate; maxSurge and
# maxUnavailable not both 0; percentages <= 100%), ValidateDeploymentUpdate (spec.selector
# immutable in apps/v1). Messages follow apimachinery pkg/util/validation/field/errors.go
# (ErrorBody renders values with Go's %#v) and pkg/api/errors NewInvalid
# ('<Kind>.<group> "<name>" is invalid: <errors>', several errors in brackets).
# maxSurge / maxUnavailable: ValidatePositiveIntOrPercent (a string must pass
# apimachinery pkg/util/validation/validation.go IsValidPercent, regex "[0-9]+%", message
# built by RegexError; an int must pass ValidateNonnegativeField, "must be greater than or
# equal to 0"), getIntOrPercentValue (an invalid percent counts as IntOrString.IntValue(),
# i.e. Atoi of the string, 0 when it is not a number) and IsNotMoreThan100Percent.
# A value of the wrong JSON type never reaches validation: the decoder fails and the
# apiserver answers 400 BadRequest (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/
# rest.go transformDecodeError: '<Kind> in version "<v>" cannot be handled as a <Kind>:
# <encoding/json error>').

from __future__ import annotations

import json
import re
from typing import Any

from .objects import selector_matches, selector_to_string
from .store import ApiError, Obj

IMMUTABLE = "field is immutable"


def _go_string(value: str) -> str:
    return json.dumps(value)  # %q for the ASCII label values Kubernetes allows


def _go_map(labels: Any) -> str:
    if labels is None:
        return "map[string]string(nil)"
    inner = ", ".join(f"{_go_string(k)}:{_go_string(str(v))}" for k, v in sorted(labels.items()))
    return f"map[string]string{{{inner}}}"


def _go_selector(selector: Any) -> str:
    if selector is None:
        return "null"
    exprs = selector.get("matchExpressions")
    if exprs is None:
        rendered = "[]v1.LabelSelectorRequirement(nil)"
    else:
        items = []
        for e in exprs:
            values = e.get("values")
            vals = "[]string(nil)" if values is None else \
                "[]string{" + ", ".join(_go_string(v) for v in values) + "}"
            items.append(f"v1.LabelSelectorRequirement{{Key:{_go_string(e.get('key', ''))}, "
                         f"Operator:{_go_string(e.get('operator', ''))}, Values:{vals}}}")
        rendered = "[]v1.LabelSelectorRequirement{" + ", ".join(items) + "}"
    return (f"v1.LabelSelector{{MatchLabels:{_go_map(selector.get('matchLabels'))}, "
            f"MatchExpressions:{rendered}}}")


def _go_intstr(value: Any) -> str:
    if isinstance(value, str):
        return f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{_go_string(value)}}}"
    return f"intstr.IntOrString{{Type:0, IntVal:{int(value or 0)}, StrVal:\"\"}}"


PERCENT_FORMAT = "[0-9]+%"
PERCENT_MESSAGE = ("a valid percent string must be a numeric string followed by an ending '%' "
                   f"(e.g. '1%',  or '93%', regex used for validation is '{PERCENT_FORMAT}')")
NEGATIVE = "must be greater than or equal to 0"
_INT32_FIELDS = ("replicas", "revisionHistoryLimit", "minReadySeconds",
                 "progressDeadlineSeconds")


def _valid_percent(value: str) -> bool:
    """IsValidPercent: ``^[0-9]+%$``."""
    return re.fullmatch(PERCENT_FORMAT, value) is not None


def _int_or_percent(value: Any) -> int:
    """getIntOrPercentValue: a valid percent's number, else IntValue() (Atoi, 0 on error)."""
    if isinstance(value, str):
        text = value[:-1] if _valid_percent(value) else value
        return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else 0
    return int(value or 0)


def _json_kind(value: Any) -> str:
    """How encoding/json names a value it cannot unmarshal (UnmarshalTypeError.Value)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {json.dumps(value)}"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _decodes(spec: Any) -> None:
    """400 BadRequest for a field whose JSON type the Go struct cannot take."""
    problem = None
    for field in _INT32_FIELDS:
        value = spec.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            problem = (f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                       f"DeploymentSpec.spec.{field} of type int32")
            break
    rolling = ((spec.get("strategy") or {}).get("rollingUpdate") or {}) \
        if isinstance(spec.get("strategy"), dict) else {}
    for field in ("maxUnavailable", "maxSurge"):
        value = rolling.get(field) if isinstance(rolling, dict) else None
        if problem is None and value is not None and (
                isinstance(value, bool) or not isinstance(value, int | str)):
            # intstr.IntOrString.UnmarshalJSON: not a quoted string -> json.Unmarshal(int32)
            problem = f"json: cannot unmarshal {_json_kind(value)} into Go value of type int32"
    if problem is not None:
        raise ApiError(400, "BadRequest", 'Deployment in version "v1" cannot be handled as a '
                       f"Deployment: {problem}")


def _positive_int_or_percent(errs: _Errors, field: str, value: Any) -> None:
    """ValidatePositiveIntOrPercent."""
    if isinstance(value, str):
        if not _valid_percent(value):
            errs.invalid(field, _go_intstr(value), PERCENT_MESSAGE)
    elif int(value) < 0:
        errs.invalid(field, str(int(value)), NEGATIVE)


class _Errors:
    def __init__(self) -> None:
        self.causes: list[dict[str, str]] = []

    def invalid(self, field: str, value: str, detail: str) -> None:
        self.causes.append({"reason": "FieldValueInvalid",
                            "message": f"Invalid value: {value}: {detail}", "field": field})

    def forbidden(self, field: str, detail: str) -> None:
        self.causes.append({"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}",
                            "field": field})

    def required(self, field: str, detail: str = "") -> None:
        self.causes.append({"reason": "FieldValueRequired",
                            "message": "Required value" + (f": {detail}" if detail else ""),
                            "field": field})

    def not_supported(self, field: str, value: str, supported: list[str]) -> None:
        """field.NotSupported: 'Unsupported value: "x": supported values: "a", "b"'."""
        choices = ", ".join(_go_string(v) for v in supported)
        self.causes.append({"reason": "FieldValueNotSupported", "field": field,
                            "message": f"Unsupported value: {_go_string(value)}: "
                            f"supported values: {choices}"})

    def raise_if_any(self, name: str, kind: str = "Deployment", group: str = "apps") -> None:
        """apierrors.NewInvalid: '<Kind>.<group> "<name>" is invalid: ...' (the core group
        has no suffix), details without an empty group."""
        if not self.causes:
            return
        texts = [f"{c['field']}: {c['message']}" for c in self.causes]
        joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
        qualified = f"{kind}.{group}" if group else kind
        details: dict[str, Any] = {"name": name, "group": group, "kind": kind,
                                   "causes": self.causes}
        if not group:
            del details["group"]
        raise ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {joined}',
                       details=details)


def validate_deployment(obj: Obj, old: Obj | None) -> None:
    """Raise the API server's 422 for an invalid Deployment (``old``: on update)."""
    spec = obj.get("spec") or {}
    _decodes(spec)
    errs = _Errors()
    name = (obj.get("metadata") or {}).get("name", "")
    selector = spec.get("selector")
    if old is not None:
        old_selector = (old.get("spec") or {}).get("selector")
        if selector_to_string(selector) != selector_to_string(old_selector) or \
                (selector is None) != (old_selector is None):
            errs.invalid("spec.selector", _go_selector(selector), IMMUTABLE)
    if selector is None:
        errs.required("spec.selector")
    elif not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errs.invalid("spec.selector", _go_selector(selector),
                     "empty selector is invalid for deployment")
    else:
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector_matches(selector_to_string(selector), labels):
            errs.invalid("spec.template.metadata.labels", _go_map(labels),
                         "`selector` does not match template `labels`")
    for field in ("replicas", "revisionHistoryLimit", "minReadySeconds"):
        if int(spec.get(field) or 0) < 0:
            errs.invalid(f"spec.{field}", str(spec[field]), NEGATIVE)
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None and int(deadline) <= int(spec.get("minReadySeconds") or 0):
        errs.invalid("spec.progressDeadlineSeconds", str(deadline),
                     "must be greater than minReadySeconds")
    strategy = spec.get("strategy") or {}
    kind = strategy.get("type", "RollingUpdate")
    if kind not in ("Recreate", "RollingUpdate"):
        errs.causes.append({"reason": "FieldValueNotSupported", "field": "spec.strategy.type",
                            "message": f'Unsupported value: {_go_string(kind)}: supported '
                            'values: "Recreate", "RollingUpdate"'})
    elif kind == "Recreate" and strategy.get("rollingUpdate") is not None:
        errs.forbidden("spec.strategy.rollingUpdate",
                       "may not be specified when strategy `type` is 'Recreate'")
    elif kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        surge, unavailable = rolling.get("maxSurge"), rolling.get("maxUnavailable")
        for field, value in (("maxUnavailable", unavailable), ("maxSurge", surge)):
            if value is not None:
                _positive_int_or_percent(errs, f"spec.strategy.rollingUpdate.{field}", value)
        for field, value in (("maxUnavailable", unavailable), ("maxSurge", surge)):
            if isinstance(value, str) and _valid_percent(value) and _int_or_percent(value) > 100:
                errs.invalid(f"spec.strategy.rollingUpdate.{field}", _go_intstr(value),
                             "must not be greater than 100%")
        if _int_or_percent(unavailable) == 0 and _int_or_percent(surge) == 0:
            errs.invalid("spec.strategy.rollingUpdate.maxUnavailable", _go_intstr(unavailable),
                         "may not be 0 when `maxSurge` is 0")
    errs.raise_if_any(name)
