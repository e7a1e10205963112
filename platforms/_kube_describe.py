"""One Deployment revision as ``kubectl rollout history deployment/x --revision=N`` prints it,
and the configuration that differs between two revisions' pod templates.

Works on pod templates in wire form (camelCase dicts, ``serialize``), so what is printed is
exactly what the API server returned, as kubectl prints it.
"""

# The layout follows kubectl (k8s.io/kubectl): pkg/polymorphichelpers/history.go
# (DeploymentHistoryViewer.ViewHistory copies the ReplicaSet's change-cause into the template's
# annotations, then printTemplate) and pkg/describe/describe.go (DescribePodTemplate,
# describeContainers, describeContainerEnvVars/EnvFrom/Volumes, DescribeProbe, describeVolumes,
# printLabelsMultiline, printAnnotationsMultiline, printPodTolerationsMultiline). Its
# PrefixWriter indents by two spaces per level and writes label/value separated by a tab.
#
# One deliberate difference: an environment literal, an annotation or a command-line value
# (``--db-password=…``) whose name looks like a credential is shown through ``mask_value``,
# never as kubectl shows it: the text is posted to Slack. References (secretKeyRef,
# configMapKeyRef, envFrom) are names, never resolved.
# Not rendered (kubectl prints them, rare in application Deployments): topology spread
# constraints and the details of exotic volume types (their type is named instead).

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from platforms._kube_resources import parse_cpu_millicores, parse_memory_mib
from platforms.base import ConfigDifference, mask_command, mask_value

CHANGE_CAUSE = "kubernetes.io/change-cause"
# describe.go: skipAnnotations (the last-applied configuration is the whole object again).
_SKIP_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
_MAX_ANNOTATION_LEN = 140  # describe.go: maxAnnotationLen

Obj = Mapping[str, Any]


class _Writer:
    """kubectl's PrefixWriter: ``write(level, text)`` indents by two spaces per level."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, level: int, text: str) -> None:
        self.parts.append("  " * level + text)

    def text(self) -> str:
        return "".join(self.parts)


def revision_text(kind_name: str, number: int, template: Obj, change_cause: str | None) -> str:
    """``<kind_name> with revision #N`` and the pod template, as kubectl prints them."""
    template = dict(template)
    meta = dict(template.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    if change_cause:  # history.go: the ReplicaSet's change-cause, put on the template
        annotations[CHANGE_CAUSE] = change_cause
    meta["annotations"] = annotations
    template["metadata"] = meta
    w = _Writer()
    w.write(0, f"{kind_name} with revision #{number}\n")
    _pod_template(template, w)
    return w.text()


def _pod_template(template: Obj, w: _Writer) -> None:
    meta, spec = template.get("metadata") or {}, template.get("spec") or {}
    w.write(0, "Pod Template:\n")
    _labels(w, "  Labels", meta.get("labels") or {})
    if meta.get("annotations"):
        _annotations(w, "  Annotations", meta["annotations"])
    if spec.get("serviceAccountName"):
        w.write(1, f"Service Account:\t{spec['serviceAccountName']}\n")
    if spec.get("initContainers"):
        _containers("Init Containers", spec["initContainers"], w)
    _containers("Containers", spec.get("containers") or [], w)
    _volumes(spec.get("volumes") or [], w)
    if spec.get("priorityClassName"):
        w.write(1, f"Priority Class Name:\t{spec['priorityClassName']}\n")
    _labels(w, "  Node-Selectors", spec.get("nodeSelector") or {})
    _tolerations(w, "  Tolerations", spec.get("tolerations") or [])


def _labels(w: _Writer, title: str, labels: Mapping[str, str]) -> None:
    w.write(0, f"{title}:\t")
    if not labels:
        w.write(0, "<none>\n")
        return
    for i, key in enumerate(sorted(labels)):
        if i:
            w.write(0, "\t")
        w.write(0, f"{key}={labels[key]}\n")


def _annotations(w: _Writer, title: str, annotations: Mapping[str, str]) -> None:
    w.write(0, f"{title}:\t")
    keys = sorted(k for k in annotations if k not in _SKIP_ANNOTATIONS)
    if not keys:
        w.write(0, "<none>\n")
        return
    for i, key in enumerate(keys):
        if i:
            w.write(0, "\t")
        value = str(mask_value(key, annotations[key]) if key != CHANGE_CAUSE
                    else annotations[key]).removesuffix("\n")
        if len(value) + len(key) + 2 > _MAX_ANNOTATION_LEN or "\n" in value:
            w.write(0, f"{key}:\n")
            for line in value.split("\n"):
                short = line if len(line) <= _MAX_ANNOTATION_LEN - 2 else \
                    line[:_MAX_ANNOTATION_LEN - 2] + "..."
                w.write(0, f"\t  {short}\n")
        else:
            w.write(0, f"{key}: {value}\n")


def _tolerations(w: _Writer, title: str, tolerations: list[Obj]) -> None:
    w.write(0, f"{title}:\t")
    if not tolerations:
        w.write(0, "<none>\n")
        return
    for i, t in enumerate(sorted(tolerations, key=lambda t: str(t.get("key") or ""))):
        if i:
            w.write(0, "\t")
        key, value, effect = t.get("key") or "", t.get("value") or "", t.get("effect") or ""
        line = key + (f"={value}" if value else "") + (f":{effect}" if effect else "")
        if t.get("operator") == "Exists" and not value:
            line += " op=Exists" if key or effect else "op=Exists"
        if t.get("tolerationSeconds") is not None:
            line += f" for {t['tolerationSeconds']}s"
        w.write(0, line + "\n")


def _containers(label: str, containers: list[Obj], w: _Writer) -> None:
    w.write(0, f"  {label}:" + (" <none>" if not containers else "") + "\n")
    for c in containers:
        w.write(1, f" {c.get('name')}:\n")
        w.write(2, f"Image:\t{c.get('image') or ''}\n")
        ports = c.get("ports") or []
        port = ", ".join(f"{p.get('containerPort', 0)}/{p.get('protocol') or ''}" for p in ports)
        host = ", ".join(f"{p.get('hostPort', 0)}/{p.get('protocol') or ''}" for p in ports)
        w.write(2, (f"Ports:\t{port}" if "," in port else f"Port:\t{port or '<none>'}") + "\n")
        w.write(2, (f"Host Ports:\t{host}" if "," in host else f"Host Port:\t{host or '<none>'}")
                + "\n")
        seccomp = (c.get("securityContext") or {}).get("seccompProfile")
        if seccomp:
            w.write(2, f"SeccompProfile:\t{seccomp.get('type')}\n")
            if seccomp.get("type") == "Localhost":
                w.write(3, f"LocalhostProfile:\t{seccomp.get('localhostProfile')}\n")
        for title, key in (("Command", "command"), ("Args", "args")):
            if c.get(key):
                w.write(2, f"{title}:\n")
                for item in mask_command([str(item) for item in c[key]]):
                    for line in item.split("\n"):
                        w.write(3, f"{line}\n")
        resources = c.get("resources") or {}
        for title, key in (("Limits", "limits"), ("Requests", "requests")):
            if resources.get(key):
                w.write(2, f"{title}:\n")
                for name in sorted(resources[key]):
                    w.write(3, f"{name}:\t{resources[key][name]}\n")
        for title, key in (("Liveness", "livenessProbe"), ("Readiness", "readinessProbe"),
                           ("Startup", "startupProbe")):
            if c.get(key) is not None:
                w.write(2, f"{title}:\t{_probe(c[key])}\n")
        if c.get("envFrom"):
            _env_from(c["envFrom"], w)
        _env(c, w)
        _mounts(c, w)


def _int_or_string(value: Any) -> str:
    return "" if value is None else str(value)


def _probe(probe: Obj) -> str:
    """describe.go DescribeProbe; the URL the way Go's url.URL.String() writes it."""
    attrs = (f"delay={probe.get('initialDelaySeconds', 0)}s "
             f"timeout={probe.get('timeoutSeconds', 0)}s "
             f"period={probe.get('periodSeconds', 0)}s "
             f"#success={probe.get('successThreshold', 0)} "
             f"#failure={probe.get('failureThreshold', 0)}")
    if probe.get("exec") is not None:  # a command line like Command/Args: masked the same
        command = mask_command([str(item) for item in probe["exec"].get("command") or []])
        return f"exec [{' '.join(command)}] {attrs}"
    if probe.get("httpGet") is not None:
        get = probe["httpGet"]
        scheme = str(get.get("scheme") or "").lower()
        port = _int_or_string(get.get("port"))
        host = f"{get.get('host') or ''}:{port}" if port else str(get.get("host") or "")
        path = str(get.get("path") or "")
        url = f"{scheme}:" if scheme else ""
        if scheme or host:
            url += "//" + host if host or path else ""
        if path and not path.startswith("/") and host:
            url += "/"
        return f"http-get {url + path} {attrs}"
    if probe.get("tcpSocket") is not None:
        sock = probe["tcpSocket"]
        return f"tcp-socket {sock.get('host') or ''}:{_int_or_string(sock.get('port'))} {attrs}"
    if probe.get("grpc") is not None:
        grpc = probe["grpc"]
        return f"grpc <pod>:{grpc.get('port', 0)} {grpc.get('service') or ''} {attrs}"
    return f"unknown {attrs}"


def _env_from(sources: list[Obj], w: _Writer) -> None:
    w.write(2, "Environment Variables from:\n")
    for e in sources:
        ref, kind = ((e["configMapRef"], "ConfigMap") if e.get("configMapRef") is not None
                     else (e.get("secretRef") or {}, "Secret"))
        optional = "true" if ref.get("optional") else "false"
        prefix = e.get("prefix") or ""
        shown = f"{kind} with prefix '{prefix}'" if prefix else kind
        w.write(3, f"{ref.get('name') or ''}\t{shown}\tOptional: {optional}\n")


def _env(c: Obj, w: _Writer) -> None:
    env = c.get("env") or []
    w.write(2, "Environment:" + ("\t<none>" if not env else "") + "\n")
    for e in env:
        name, source = e.get("name") or "", e.get("valueFrom")
        if source is None:
            value = str(mask_value(name, e.get("value") or ""))
            for i, line in enumerate(value.split("\n")):
                w.write(3, f"{name}:\t{line}\n" if i == 0 else f"\t{line}\n")
        elif source.get("fieldRef") is not None:
            ref = source["fieldRef"]
            w.write(3, f"{name}:\t ({ref.get('apiVersion') or ''}:{ref.get('fieldPath')})\n")
        elif source.get("resourceFieldRef") is not None:
            ref = source["resourceFieldRef"]
            w.write(3, f"{name}:\t{_resource_value(ref, c)} ({ref.get('resource')})\n")
        elif source.get("secretKeyRef") is not None:
            ref = source["secretKeyRef"]
            w.write(3, f"{name}:\t<set to the key '{ref.get('key')}' in secret "
                       f"'{ref.get('name')}'>\tOptional: "
                       f"{'true' if ref.get('optional') else 'false'}\n")
        elif source.get("configMapKeyRef") is not None:
            ref = source["configMapKeyRef"]
            w.write(3, f"{name}:\t<set to the key '{ref.get('key')}' of config map "
                       f"'{ref.get('name')}'>\tOptional: "
                       f"{'true' if ref.get('optional') else 'false'}\n")


def _resource_value(ref: Obj, c: Obj) -> str:
    """resourcehelper.ExtractContainerResourceValue with the default divisor (1): CPU in
    whole cores rounded up, memory in bytes; an unset limit is the node's allocatable."""
    resource = str(ref.get("resource") or "")
    group, _, kind = resource.partition(".")
    quantity = ((c.get("resources") or {}).get(group) or {}).get(kind)
    if quantity is None or ref.get("divisor") not in (None, "1", 1):
        value = "0" if quantity is None else ""
    elif kind == "cpu":
        value = str(math.ceil(parse_cpu_millicores(str(quantity)) / 1000))
    else:
        value = str(round(parse_memory_mib(str(quantity)) * 1024 * 1024))
    if value == "0" and resource in ("limits.cpu", "limits.memory"):
        return "node allocatable"
    return value


def _mounts(c: Obj, w: _Writer) -> None:
    mounts = sorted(c.get("volumeMounts") or [], key=lambda m: str(m.get("mountPath")))
    w.write(2, "Mounts:" + ("\t<none>" if not mounts else "") + "\n")
    for m in mounts:
        flags = ["ro" if m.get("readOnly") else "rw"]
        if m.get("subPath"):
            flags.append(f"path={json.dumps(m['subPath'])}")
        w.write(3, f"{m.get('mountPath')} from {m.get('name')} ({','.join(flags)})\n")
    devices = sorted(c.get("volumeDevices") or [], key=lambda d: str(d.get("devicePath")))
    if devices:
        w.write(2, "Devices:\n")
        for d in devices:
            w.write(3, f"{d.get('devicePath')} from {d.get('name')}\n")


def _volumes(volumes: list[Obj], w: _Writer) -> None:
    if not volumes:
        w.write(0, "  Volumes:\t<none>\n")
        return
    w.write(0, "  Volumes:\n")
    for v in volumes:
        w.write(1, f" {v.get('name')}:\n")
        if v.get("hostPath") is not None:
            src = v["hostPath"]
            w.write(2, "Type:\tHostPath (bare host directory volume)\n"
                       f"    Path:\t{src.get('path')}\n"
                       f"    HostPathType:\t{src.get('type') or '<none>'}\n")
        elif v.get("emptyDir") is not None:
            src = v["emptyDir"]
            limit = src.get("sizeLimit")
            w.write(2, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n"
                       f"    Medium:\t{src.get('medium') or ''}\n"
                       f"    SizeLimit:\t{limit if limit not in (None, '0') else '<unset>'}\n")
        elif v.get("secret") is not None:
            src = v["secret"]
            w.write(2, "Type:\tSecret (a volume populated by a Secret)\n"
                       f"    SecretName:\t{src.get('secretName') or ''}\n"
                       f"    Optional:\t{'true' if src.get('optional') else 'false'}\n")
        elif v.get("configMap") is not None:
            src = v["configMap"]
            w.write(2, "Type:\tConfigMap (a volume populated by a ConfigMap)\n"
                       f"    Name:\t{src.get('name') or ''}\n"
                       f"    Optional:\t{'true' if src.get('optional') else 'false'}\n")
        elif v.get("persistentVolumeClaim") is not None:
            src = v["persistentVolumeClaim"]
            w.write(2, "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim "
                       "in the same namespace)\n"
                       f"    ClaimName:\t{src.get('claimName')}\n"
                       f"    ReadOnly:\t{'true' if src.get('readOnly') else 'false'}\n")
        else:
            kinds = [k for k in v if k != "name"]
            w.write(2, f"Type:\t{kinds[0] if kinds else '<unknown>'} (not described here; "
                       "kubectl describes it)\n")


# ---------------------------------------------------------------- configuration view
def _env_entries(template: Obj) -> dict[str, tuple[str, str]]:
    """Every environment entry of a template: key -> (kind, value as shown). The key is the
    variable's name, prefixed by its container's name when the pod has several, and always
    by ``init <name>/`` for an init container's (a migration's settings change too)."""
    spec = template.get("spec") or {}
    containers = spec.get("containers") or []
    several = len(containers) > 1
    out: dict[str, tuple[str, str]] = {}
    # Container names are unique across both lists (k8s.io/kubernetes
    # pkg/apis/core/validation/validation.go: validateInitContainers checks allNames).
    prefixed = [(f"init {c.get('name')}/", c) for c in spec.get("initContainers") or []]
    prefixed += [(f"{c.get('name')}/" if several else "", c) for c in containers]
    for prefix, c in prefixed:
        for e in c.get("env") or []:
            name, source = str(e.get("name") or ""), e.get("valueFrom")
            if source is None:
                out[prefix + name] = ("env", str(mask_value(name, e.get("value") or "")))
            elif source.get("secretKeyRef") is not None:
                ref = source["secretKeyRef"]
                out[prefix + name] = ("secret ref",
                                      f"secret {ref.get('name')} key {ref.get('key')}")
            elif source.get("configMapKeyRef") is not None:
                ref = source["configMapKeyRef"]
                out[prefix + name] = ("configmap ref",
                                      f"configmap {ref.get('name')} key {ref.get('key')}")
            elif source.get("fieldRef") is not None:
                out[prefix + name] = ("env", f"field {source['fieldRef'].get('fieldPath')}")
            elif source.get("resourceFieldRef") is not None:
                out[prefix + name] = (
                    "env", f"resource {source['resourceFieldRef'].get('resource')}")
        for e in c.get("envFrom") or []:
            kind, ref = (("configmap", e["configMapRef"]) if e.get("configMapRef") is not None
                         else ("secret", e.get("secretRef") or {}))
            key = f"{prefix}{kind} {ref.get('name')}"
            out[key] = ("envFrom", f"all keys, prefix '{e['prefix']}'" if e.get("prefix")
                        else "all keys")
    return out


def template_differences(running: Obj, pinned: Obj) -> list[ConfigDifference]:
    """What configuration changes when ``pinned``'s template replaces ``running``'s:
    environment literals (masked), secret and config map references, envFrom sources."""
    old, new = _env_entries(running), _env_entries(pinned)
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        kinds = {entry[0] for entry in (a, b) if entry is not None}
        kind = kinds.pop() if len(kinds) == 1 else "env"
        out.append(ConfigDifference(kind, key, a[1] if a else None, b[1] if b else None))
    return out
