"""`rollback-bot auto <service>` end to end: the CLI in its own process, the real Kubernetes
adapter against the Kubernetes emulator, the demo service whose health follows the
Deployment's image, a real PostgreSQL, and kubectl as the oracle of what the cluster did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from sandbox.config import error_rate_query, sandbox_config_dict
from sandbox.demo import DemoService
from sandbox.kube import KubeEmulator
from sandbox.kube_seed import DEPLOYMENT, IMAGE, NAMESPACE, kubernetes_target, seed_incident
from tests.integration.kube_fixtures import Kubectl
from tests.integration.prom_fixtures import PrometheusFactory, PrometheusServer, scraping
from tests.support.sandbox_process import (
    free_port,
    sandbox_cli,
    sandbox_env,
    start_sandbox,
    stop_process,
    wait_healthy,
)
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
SERVICE = "hotel-voice-bot"
CHANNEL = "incident-hotel-voice-bot"  # without Slack, the channel is called by its name
ERROR_RATE = error_rate_query("3s")


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.out)
        return parsed


@dataclass
class Scene:
    kube: KubeEmulator
    demo: DemoService
    db: str
    config: Path

    def auto(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Run:
        env = {**{k: v for k, v in os.environ.items()
                  if not k.startswith(("SLACK_", "KUBE", "ROLLBACK_"))},
               "DATABASE_URL": self.db, **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "bot.runtime.cli", "auto", SERVICE, "--config",
             str(self.config), *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def rollbacks(self) -> list[dict[str, Any]]:
        with psycopg.connect(self.db, row_factory=psycopg.rows.dict_row) as conn:
            return list(conn.execute("SELECT id, state, requester, approver FROM rollbacks "
                                     "WHERE service = %s ORDER BY id", (SERVICE,)))

    def audit(self, rollback_id: int) -> list[dict[str, Any]]:
        with psycopg.connect(self.db, row_factory=psycopg.rows.dict_row) as conn:
            return list(conn.execute("SELECT actor, event, detail FROM audit_events "
                                     "WHERE rollback_id = %s ORDER BY id", (rollback_id,)))


@pytest.fixture
def scene(db: str, tmp_path: Path) -> Iterator[Callable[..., Scene]]:
    stack: list[Any] = []

    def make(*, bad: tuple[str, ...], automation: dict[str, Any] | None = None,
             prometheus: Callable[[DemoService], str] | None = None,
             drop_checks: bool = False, rollout_duration: float = 0.3) -> Scene:
        kube = KubeEmulator(seed="auto", rollout_duration=rollout_duration).start()
        stack.append(kube)
        seed_incident(kube)  # rev 3 runs 1.3.0, rev 4 (current) runs 1.4.0
        kubeconfig = tmp_path / "kubeconfig"
        kube.write_kubeconfig(kubeconfig)
        demo = DemoService(version_source=lambda: kube.current_image(NAMESPACE, DEPLOYMENT),
                           bad_versions=bad, bad_health_delay=0.05).start()
        stack.append(demo)
        data = sandbox_config_dict(platform="kubernetes",
                                   kubernetes={**kubernetes_target(),
                                               "kubeconfig": str(kubeconfig)},
                                   demo_url=demo.url, stakeholder_channel=None,
                                   postmortem_dir=str(tmp_path / "pm"))
        if prometheus is not None:  # the error-rate rule, on a real Prometheus, time scaled
            svc = data["services"][SERVICE]
            svc["prometheus"] = {"url": prometheus(demo), "error_rate_query": ERROR_RATE,
                                 "error_rate_threshold": 0.05}
            svc["watcher"] = {"duration_seconds": 6, "interval_seconds": 1}
        if drop_checks:
            data["services"][SERVICE].pop("health")
        data["automation"] = {"channel": CHANNEL, "severity": "P0", "self_approve": ["P0"],
                              "timeout_seconds": 60, "settle_seconds": 0,
                              **(automation or {})}
        config = tmp_path / "rollback.yml"
        config.write_text(yaml.safe_dump(data))
        return Scene(kube, demo, db, config)

    yield make
    for part in reversed(stack):
        part.stop()


def history(kubectl: Kubectl, kube: KubeEmulator) -> str:
    out = kubectl.run(kube, "rollout", "history", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE)
    assert out.returncode == 0, out.stderr
    return out.stdout


def revisions(kubectl_history: str) -> list[int]:
    return [int(line.split()[0]) for line in kubectl_history.splitlines()
            if line.strip()[:1].isdigit()]


def test_healthy_service_exits_0_and_changes_nothing(scene: Callable[..., Scene],
                                                     kubectl: Kubectl) -> None:
    s = scene(bad=())
    before = history(kubectl, s.kube)
    run = s.auto()
    assert run.code == 0, run.err
    assert run.out.startswith(f"{SERVICE} is healthy:"), run.out
    assert "3/3 probes passed" in run.out
    assert history(kubectl, s.kube) == before  # kubectl: no new revision
    assert s.kube.current_image(NAMESPACE, DEPLOYMENT) == f"{IMAGE}:1.4.0"
    assert s.rollbacks() == []


def test_unhealthy_service_is_rolled_back_once_and_recovers(scene: Callable[..., Scene],
                                                            kubectl: Kubectl) -> None:
    s = scene(bad=("1.4.0",))
    assert revisions(history(kubectl, s.kube)) == [1, 2, 3, 4]
    run = s.auto("--json")
    assert run.code == 0, run.err
    result = run.json()
    assert result["outcome"] == "recovered" and result["exit_code"] == 0
    assert "health check failing" in result["before"]["problems"][0]
    assert result["after"]["healthy"] is True and result["after"]["problems"] == []
    assert result["rollback"]["to"].startswith("rev 3") and "1.3.0" in result["rollback"]["to"]
    assert result["rollback"]["state"] in ("monitoring", "completed")
    # kubectl: exactly one rollback (rev 3's template came back as rev 5)
    assert revisions(history(kubectl, s.kube)) == [1, 2, 4, 5]
    assert s.kube.current_image(NAMESPACE, DEPLOYMENT) == f"{IMAGE}:1.3.0"
    rows = s.rollbacks()
    assert len(rows) == 1
    assert rows[0]["requester"] == rows[0]["approver"] == "rollback-bot-auto"
    approve = next(e for e in s.audit(rows[0]["id"]) if e["event"] == "approve")
    assert approve["actor"] == "rollback-bot-auto" and approve["detail"]["automation"] is True
    # Without Slack, what the bot would have said in the incident channel is on stderr.
    assert f"[{CHANNEL}]" in run.err and "Approved by the automation" in run.err

    again = s.auto("--json")  # the next cron run: healthy now, nothing more is done
    assert again.code == 0 and again.json()["outcome"] == "healthy", again.err
    assert len(s.rollbacks()) == 1


def test_rollback_that_does_not_recover_exits_non_zero_with_the_reason(
        scene: Callable[..., Scene], kubectl: Kubectl) -> None:
    s = scene(bad=("1.4.0", "1.3.0"))  # the previous release is broken too
    run = s.auto("--json")
    result = run.json()
    assert run.code == result["exit_code"] == 5, run.err
    assert result["outcome"] == "rollback_failed"
    assert result["rollback"]["state"] == "verification_failed"
    # the reason names the rollback and what is still wrong, not just that something is
    assert result["rollback"]["ref"] in result["reason"]
    assert "health (HTTP 503, expected 200)" in result["reason"]
    assert revisions(history(kubectl, s.kube)) == [1, 2, 4, 5]  # one rollback, not two


def test_without_slack_nothing_only_a_person_could_approve_is_filed(
        scene: Callable[..., Scene], kubectl: Kubectl) -> None:
    s = scene(bad=("1.4.0",), automation={"severity": "P1"})  # P1 is not self-approved
    before = history(kubectl, s.kube)
    run = s.auto("--json")
    assert run.code == 3, run.err
    result = run.json()
    assert result["outcome"] == "refused"
    assert "P1 requests need a person's approval" in result["reason"]
    assert "nobody could approve the request, so none was filed" in result["reason"]
    assert s.rollbacks() == [] and history(kubectl, s.kube) == before
    dry = s.auto("--dry-run", "--json")  # a dry run gives the same answer as the run
    assert dry.code == 3 and dry.json()["outcome"] == "refused", dry.out + dry.err


def test_a_request_that_needs_a_person_waits_and_a_decision_stands(
        scene: Callable[..., Scene], kubectl: Kubectl) -> None:
    from sandbox.slack import DEFAULT_BOT_TOKEN, SlackEmulator

    with SlackEmulator() as slack:
        channel = slack.channel_id("inc-hotel-voice-bot")
        s = scene(bad=("1.4.0",), automation={"severity": "P1", "channel": channel})
        on_slack = {"SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN, "SLACK_API_URL": slack.base_url}
        before = history(kubectl, s.kube)
        run = s.auto("--json", env=on_slack)
        assert run.code == 4, run.err
        result = run.json()
        assert result["outcome"] == "awaiting_approval"
        assert "person's approval in Slack" in result["reason"] and "P1" in result["reason"]
        assert [r["state"] for r in s.rollbacks()] == ["pending_approval"]
        request = next(m for m in slack.messages(channel) if "RB-1" in m.get("text", ""))
        assert "approve" in json.dumps(request.get("blocks")).lower()  # people can decide
        assert history(kubectl, s.kube) == before

        refused = s.auto("--json", env=on_slack)  # the next run finds the open request
        assert refused.code == 3 and refused.json()["outcome"] == "refused", refused.err
        assert "RB-1" in refused.json()["reason"]

        # A person rejects it (as the Reject dialog does): the automation does not ask again
        with psycopg.connect(s.db) as conn:
            conn.execute("UPDATE rollbacks SET state = 'rejected', finished_at = now() "
                         "WHERE id = 1")
        again = s.auto("--json", env=on_slack)
        assert again.code == 3, again.err
        assert "people already decided about rev 4" in again.json()["reason"]
        assert "RB-1 was rejected" in again.json()["reason"]
        assert len(s.rollbacks()) == 1 and history(kubectl, s.kube) == before


def test_a_service_with_nothing_to_judge_it_by_is_never_rolled_back(
        scene: Callable[..., Scene]) -> None:
    s = scene(bad=("1.4.0",), drop_checks=True)
    run = s.auto("--json")
    assert run.code == 2 and run.json()["outcome"] == "usage", run.err
    assert "neither `health` nor `prometheus`" in run.json()["reason"]
    assert s.rollbacks() == []


def test_recovery_needs_evidence_an_unreadable_error_rate_is_not_recovered(
        scene: Callable[..., Scene], kubectl: Kubectl) -> None:
    dead = "http://127.0.0.1:9"  # discard port: nothing answers
    s = scene(bad=("1.4.0",), prometheus=lambda _demo: dead)
    run = s.auto("--json")
    result = run.json()
    assert result["before"]["error_rate_note"].startswith("not read")  # no trigger by itself
    # Verification passes (health and the functional checks answer); the re-check must not
    # call it recovered without an error rate.
    assert run.code == 6 and result["outcome"] == "not_recovered", run.out + run.err
    assert "the error rate could not be read: recovery not confirmed" in result["reason"]
    assert result["after"]["health"].startswith("passing")
    assert revisions(history(kubectl, s.kube)) == [1, 2, 4, 5]


def test_the_timeout_never_abandons_a_step(scene: Callable[..., Scene],
                                          kubectl: Kubectl) -> None:
    s = scene(bad=("1.4.0",), rollout_duration=1.0)
    run = s.auto("--json", "--timeout", "0.2")
    result = run.json()
    assert run.code == 5 and result["outcome"] == "rollback_failed", run.out + run.err
    assert "was not verified within 0.2 s" in result["reason"]
    assert "waiting for the step in progress to end" in run.err
    # The step ran to its end: the rollout finished, the lease was released.
    assert result["rollback"]["state"] in ("monitoring", "completed")
    assert s.kube.current_image(NAMESPACE, DEPLOYMENT) == f"{IMAGE}:1.3.0"
    assert revisions(history(kubectl, s.kube)) == [1, 2, 4, 5]


def test_dry_run_prints_the_plan_and_changes_nothing(scene: Callable[..., Scene],
                                                     kubectl: Kubectl) -> None:
    s = scene(bad=("1.4.0",))
    before = history(kubectl, s.kube)
    run = s.auto("--dry-run")
    assert run.code == 7, run.err
    assert "dry run: would roll back rev 4" in run.out and "rev 3" in run.out
    assert "  1. " in run.out  # the steps, numbered
    assert history(kubectl, s.kube) == before
    assert s.rollbacks() == []


def test_unknown_service_is_a_usage_error(scene: Callable[..., Scene]) -> None:
    s = scene(bad=())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLBACK_"))}
    env["DATABASE_URL"] = s.db
    proc = subprocess.run([sys.executable, "-m", "bot.runtime.cli", "auto", "nope",
                           "--config", str(s.config)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "Unknown service `nope`" in proc.stderr and SERVICE in proc.stderr


def test_with_slack_configured_the_rollback_is_announced_in_the_incident_channel(
        scene: Callable[..., Scene]) -> None:
    from sandbox.slack import DEFAULT_BOT_TOKEN, SlackEmulator

    with SlackEmulator() as slack:
        channel = slack.channel_id("inc-hotel-voice-bot")
        s = scene(bad=("1.4.0",), automation={"channel": channel})
        run = s.auto("--json", env={"SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
                                    "SLACK_API_URL": slack.base_url})
        assert run.code == 0 and run.json()["outcome"] == "recovered", run.err
        assert "[" + channel not in run.err  # Slack got the messages, not stderr
        request = next(m for m in slack.messages(channel) if "RB-1" in m.get("text", ""))
        thread = "\n".join(m["text"] for m in slack.thread(channel, request["ts"]))
        assert "Approved by the automation `rollback-bot-auto`" in thread
        assert "successfully rolled out" in thread
        assert slack.calls("pins.add")  # the request is pinned like a person's


@pytest.mark.slow
def test_error_rate_rule_on_real_prometheus_triggers_and_clears(
        scene: Callable[..., Scene], prometheus_server: PrometheusFactory,
        kubectl: Kubectl) -> None:
    """Health passes at 4 %; the error-rate rule (over 5 % at every point of its duration,
    read as a range) is what the test waits for. 4 % never triggers; 30 % on
    the running release does, and the rollback cures it (the failures belong to 1.4.0)."""
    servers: list[PrometheusServer] = []

    def start_prometheus(demo: DemoService) -> str:
        demo.start_traffic(50)
        server = scraping(prometheus_server, demo)
        servers.append(server)
        return server.url

    s = scene(bad=(), prometheus=start_prometheus,
              automation={"settle_seconds": 6})  # the [3s] rate window forgets 1.4.0
    (prom,) = servers
    try:
        s.demo.app.break_(error_rate=0.04, even=True)
        prom.wait_for(ERROR_RATE, lambda v: v is not None and v > 0.02, timeout=30,
                      what="4 % errors")
        held_since = time.monotonic()
        while time.monotonic() - held_since < 8:  # longer than the rule's 6 s at 4 %
            quiet = s.auto("--dry-run", "--json")
            assert quiet.code == 0, quiet.out + quiet.err  # under the threshold: no rollback
        assert "does not hold" in quiet.json()["reason"]
        s.demo.app.break_(error_rate=0.3, even=True, version=f"{IMAGE}:1.4.0")
        prom.wait_for(ERROR_RATE, lambda v: v is not None and v > 0.05, timeout=30,
                      what="the ratio over 5 %")
        # At 30 % the drill also fails some health probes (they are requests too), which can
        # make a dry run say "unhealthy" before the rule has held for its 6 s: wait for the
        # rule itself.
        rule = "error rate over 5.00% at every check for 6 s"
        dry = wait_until(lambda: (r := s.auto("--dry-run", "--json")).code == 7
                         and rule in r.json()["reason"] and r,
                         timeout=60, interval=1.0, message="the rule holding")
        assert rule in dry.json()["reason"], dry.out
        run = s.auto("--json")
        result = run.json()
        assert run.code == 0 and result["outcome"] == "recovered", run.out + run.err
        assert result["after"]["error_rate"] is not None
        assert result["after"]["error_rate"] <= 0.05
        assert revisions(history(kubectl, s.kube)) == [1, 2, 4, 5]
    finally:
        prom.stop()


def test_the_sandbox_runs_auto_and_its_request_shows_in_the_console(tmp_path: Path) -> None:
    """`python -m sandbox auto` (the cron job, against the world `make run` starts): the
    bad release is found, rolled back through the lifecycle, and the console shows it."""
    port, console = free_port(), free_port()
    env = sandbox_env(tmp_path / "data", port, console)
    log = tmp_path / "sandbox.log"
    proc = start_sandbox(env, log)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        dry = sandbox_cli(env, "auto", "hotel-voice-bot", "--dry-run", timeout=120)
        assert dry.returncode == 7, dry.stdout + dry.stderr
        assert "(self-approved), nothing changed" in dry.stdout
        run = sandbox_cli(env, "auto", "hotel-voice-bot", "--json", timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        result = json.loads(run.stdout)
        assert result["outcome"] == "recovered" and result["rollback"]["to"].startswith("rev 3")
        said = sandbox_cli(env, "say", "/rollback status 1")
        assert "RB-1" in said.stdout, said.stdout + said.stderr
        state = httpx.get(f"http://127.0.0.1:{console}/api/state", timeout=10).json()
        assert "RB-1" in json.dumps(state)  # the request message, in the incident channel
        assert "Approved by the automation" in json.dumps(state)  # its thread
        again = sandbox_cli(env, "auto", "hotel-voice-bot", timeout=120)
        assert again.returncode == 0 and "is healthy" in again.stdout, again.stderr
    finally:
        stop_process(proc)
