"""`/rollback hotel-voice-bot` on Kubernetes: Slack emulator + Kubernetes API emulator +
the real adapter, from the request to `completed`, checked against cluster state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.domain.config import parse_config
from handlers import ids
from platforms.kubernetes import KubernetesPlatform
from platforms.registry import PRODUCTION
from sandbox.config import sandbox_config_dict
from sandbox.kube import KubeEmulator
from sandbox.kube_seed import DEPLOYMENT, IMAGE, NAMESPACE, kubernetes_target, seed_incident
from sandbox.stack import SandboxStack
from tests.e2e.conftest import CHANNEL, action_ids


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    with KubeEmulator(seed="e2e", rollout_duration=0.5) as emulator:
        seed_incident(emulator)
        yield emulator


def test_kubernetes_rollback_end_to_end(kube: KubeEmulator, db: str, tmp_path: Path) -> None:
    data = sandbox_config_dict(platform="kubernetes", kubernetes=kubernetes_target(),
                               postmortem_dir=str(tmp_path / "pm"))
    client = kube.api_client()
    platform = KubernetesPlatform(api_client=client, request_timeout=10.0)
    with SandboxStack(config=parse_config(data, platforms=PRODUCTION), database_url=db,
                      platforms={"kubernetes": platform}) as stack:
        em, driver = stack.emulator, stack.driver
        assert driver is not None and stack.bot is not None
        assert kube.current_image(NAMESPACE, DEPLOYMENT) == f"{IMAGE}:1.4.0"
        driver.slash_command("/rollback", "hotel-voice-bot --severity P0 --reason 5xx "
                             "--scope app,config", user="alice")
        msg = em.wait_for(lambda: next(
            (m for m in em.messages(CHANNEL) if "*Assessment*" in str(m.get("blocks"))), None),
            timeout=20)
        text = str(msg["blocks"])
        assert "kubernetes:production/hotel-voice-bot" in text
        assert "rev 4 (registry.example/hotel-voice-bot:1.4.0)" in text  # current, bad
        assert "rev 3 (registry.example/hotel-voice-bot:1.3.0)" in text  # pinned target
        assert "successfully rolled out" in text  # rollout probe through the adapter
        rb = stack.bot.store.history("hotel-voice-bot")[0]
        assert rb.target_revision.id.startswith("hotel-voice-bot-")  # a ReplicaSet name
        assert any("logs" in f.get("name", "") for f in em.files())

        driver.click(CHANNEL, msg["ts"], ids.APPROVE, "bob")
        em.wait_for(lambda: stack.bot.store.get(rb.id).state.value == "completed", timeout=30)
        em.wait_for(lambda: action_ids(em.message(CHANNEL, msg["ts"])) == [ids.TIMELINE],
                    timeout=10)  # decisions gone; only the read-only Timeline stays

        assert kube.current_image(NAMESPACE, DEPLOYMENT) == f"{IMAGE}:1.3.0"
        deployment = kube.get_deployment(NAMESPACE, DEPLOYMENT)
        annotations = deployment["metadata"]["annotations"]
        assert annotations["kubernetes.io/change-cause"] == "deploy 1.3.0"
        assert annotations["deployment.kubernetes.io/revision"] == "5"  # reused RS -> max+1
        thread = "\n".join(m["text"] for m in em.thread(CHANNEL, msg["ts"]))
        assert "deployment.apps/hotel-voice-bot rolled back" in thread
        assert "successfully rolled out" in thread
        # the snapshot step captured both configured objects before any change
        snap = next(s for s in stack.bot.store.steps(rb.id) if s.kind == "snapshot_config")
        assert snap.status == "done" and len(snap.result["objects"]) == 2
        assert "sandbox-key" not in str(em.calls())  # secret data never reaches Slack
    client.close()
