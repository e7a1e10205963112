"""The sandbox's Kubernetes incident through Slack: the request's plan shows what the bad
release changed in the configuration, and ``/rollback history … --revision N`` shows the
revision as kubectl does (Slack emulator + Kubernetes API emulator + the real adapter)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.domain.config import parse_config
from platforms.kubernetes import KubernetesPlatform
from platforms.registry import PRODUCTION
from sandbox.config import sandbox_config_dict
from sandbox.kube import KubeEmulator
from sandbox.kube_seed import kubernetes_target, seed_incident
from sandbox.stack import SandboxStack
from tests.support.messages import request_message


@pytest.fixture
def stack(db: str, tmp_path: Path) -> Iterator[SandboxStack]:
    with KubeEmulator(seed="e2e", rollout_duration=0.3) as kube:
        seed_incident(kube)
        data = sandbox_config_dict(platform="kubernetes", kubernetes=kubernetes_target(),
                                   postmortem_dir=str(tmp_path / "pm"))
        client = kube.api_client()
        platform = KubernetesPlatform(api_client=client, request_timeout=10.0)
        with SandboxStack(config=parse_config(data, platforms=PRODUCTION), database_url=db,
                          platforms={"kubernetes": platform}) as running:
            yield running
        client.close()


def _texts(ephemeral: dict[str, Any]) -> str:
    return "\n".join(str(b.get("text", {}).get("text", "")) for b in ephemeral["blocks"])


def test_the_plan_shows_what_the_bad_release_changed(stack: SandboxStack) -> None:
    em, driver = stack.emulator, stack.driver
    assert driver is not None
    driver.slash_command("/rollback", "hotel-voice-bot --severity P1 --reason 5xx",
                         user="alice")
    msg = request_message(em, timeout=20)
    text = str(msg["blocks"])
    assert "Configuration that differs" in text
    assert "env VOICE_TIMEOUT_MS: `2000` → (unset)" in text
    assert ("secret ref WAHA_API_KEY: `secret hotel-voice-bot-secrets key WAHA_API_KEY` → "
            "(unset)") in text
    assert "sandbox-key" not in text  # the Secret's value is never read, let alone shown


def test_history_with_a_revision_shows_the_pod_template(stack: SandboxStack) -> None:
    em, driver = stack.emulator, stack.driver
    assert driver is not None
    driver.slash_command("/rollback", "history hotel-voice-bot --revision 4", user="alice")
    answer = em.wait_for(lambda: next(
        (_texts(e) for e in em.ephemerals(user="alice") if "Revision 4" in str(e)), None),
        timeout=20)
    assert "deployment.apps/hotel-voice-bot with revision #4" in answer
    assert "kubernetes.io/change-cause: deploy 1.4.0 (bad)" in answer
    assert "    Environment:\n      VOICE_TIMEOUT_MS:\t2000\n" in answer
    assert "&lt;set to the key 'WAHA_API_KEY' in secret 'hotel-voice-bot-secrets'&gt;" in answer
    driver.slash_command("/rollback", "history hotel-voice-bot --revision 12", user="alice")
    missing = em.wait_for(lambda: next(
        (str(e) for e in em.ephemerals(user="alice") if "Revision 12" in str(e)), None),
        timeout=20)
    assert "known revisions: 4, 3, 2, 1" in missing
