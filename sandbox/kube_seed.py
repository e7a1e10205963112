"""Seeds the Kubernetes emulator with the hotel-voice-bot incident the sandbox rehearses.

Three good releases, then a bad one (v1.4.0) currently rolled out, plus the ConfigMap and
Secret the catalog names, so `/rollback hotel-voice-bot` has real history to work with.
"""

from __future__ import annotations

from typing import Any

from sandbox.kube import KubeEmulator

NAMESPACE, DEPLOYMENT = "production", "hotel-voice-bot"
IMAGE = "registry.example/hotel-voice-bot"
GOOD, BAD = ("1.1.0", "1.2.0", "1.3.0"), "1.4.0"
# Retired pods stay Terminating this long (the API default is 30 s): short enough for a demo
# scale-down to finish quickly, long enough to be seen waiting for.
GRACE_SECONDS = 1


def seed_incident(emulator: KubeEmulator, *, replicas: int = 3, bad_release: bool = True) -> None:
    """The good history; with ``bad_release`` also the bad release, rolled out and logging.
    Without it the last good release runs, and ``deploy_bad_release`` is the drill's deploy."""
    emulator.create_deployment(NAMESPACE, DEPLOYMENT, image=f"{IMAGE}:{GOOD[0]}",
                               replicas=replicas, change_cause=f"deploy {GOOD[0]}",
                               termination_grace_period=GRACE_SECONDS)
    for version in GOOD[1:]:
        emulator.set_image(NAMESPACE, DEPLOYMENT, image=f"{IMAGE}:{version}",
                           change_cause=f"deploy {version}")
        emulator.wait_settled(NAMESPACE, DEPLOYMENT)
    emulator.create_config_map(NAMESPACE, f"{DEPLOYMENT}-config",
                               {"LOG_LEVEL": "info", "VOICE_MODEL": "v2"})
    emulator.create_secret(NAMESPACE, f"{DEPLOYMENT}-secrets", {"WAHA_API_KEY": "sandbox-key"})
    if bad_release:
        deploy_bad_release(emulator)


# What the bad release changed besides its image, so the plan's configuration view and
# `/rollback history hotel-voice-bot --revision N` have something to show: a literal, and a
# secret reference (shown as the reference; the value stays in the Secret).
BAD_ENV: list[dict[str, Any]] = [{"name": "VOICE_TIMEOUT_MS", "value": "2000"},
           {"name": "WAHA_API_KEY", "valueFrom": {"secretKeyRef": {
               "name": f"{DEPLOYMENT}-secrets", "key": "WAHA_API_KEY"}}}]


def deploy_bad_release(emulator: KubeEmulator) -> None:
    """``kubectl set image`` and ``set env`` in one change (one new revision)."""
    def release(obj: dict[str, Any]) -> None:
        container = obj["spec"]["template"]["spec"]["containers"][0]
        container["image"] = f"{IMAGE}:{BAD}"
        container["env"] = [dict(e) for e in BAD_ENV]
        obj["metadata"].setdefault("annotations", {})[
            "kubernetes.io/change-cause"] = f"deploy {BAD} (bad)"
    emulator.update_deployment(NAMESPACE, DEPLOYMENT, release)
    emulator.wait_settled(NAMESPACE, DEPLOYMENT)
    for line in ("GET /api/health 503", "ERROR voice pipeline: upstream timeout",
                 "POST /webhook/whatsapp 500"):
        emulator.log(NAMESPACE, DEPLOYMENT, line)


def kubernetes_target() -> dict[str, object]:
    return {"namespace": NAMESPACE, "deployment": DEPLOYMENT,
            "config_maps": [f"{DEPLOYMENT}-config"], "secrets": [f"{DEPLOYMENT}-secrets"],
            "rollout_timeout_seconds": 60}
