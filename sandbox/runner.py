"""``python -m sandbox run`` (``make run``) without Slack credentials: emulator + bot +
console on 127.0.0.1.

Everything runs on the real code paths (signed requests in, Web API calls out, embedded
PostgreSQL). Each run starts from a fresh sandbox database and platform state so a
drill always begins at the same incident. One sandbox per data directory: a second
``make run`` finds the first one's lock, says where it runs and touches nothing.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import io
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import conninfo

from bot.domain.ports import Clock, utcnow
from bot.persistence.db import data_dir, embedded_database_url, migrate
from bot.runtime.server import PortInUse
from platforms.base import Platform
from platforms.kubernetes import KubernetesPlatform
from sandbox.config import ECS_SERVICE, FLY_SERVICE, sandbox_config
from sandbox.console import Console
from sandbox.demo import DemoService
from sandbox.github.server import GithubEmulator
from sandbox.kube import KubeEmulator
from sandbox.kube_seed import BAD, DEPLOYMENT, NAMESPACE, kubernetes_target, seed_incident
from sandbox.mailbox import SandboxMailbox
from sandbox.pagerduty import PagerDutyEmulator
from sandbox.prometheus import SandboxPrometheus
from sandbox.slack import DEFAULT_BOT_TOKEN
from sandbox.slack import DEFAULT_CHANNEL as SANDBOX_CHANNEL
from sandbox.stack import SandboxStack
from sandbox.statuspage import StatuspageEmulator

if TYPE_CHECKING:  # imported where used: moto and boto3 take a second to import
    from sandbox.ecs import EcsEmulator, Seeded
    from sandbox.fly import FlyEmulator

log = logging.getLogger(__name__)
SANDBOX_DB = "rollback_sandbox"
SERVICE = "hotel-voice-bot"
# The console has no login and holds the signing secret: loopback unless told otherwise.
CONSOLE_HOST = "127.0.0.1"


def state_path() -> Path:
    return data_dir() / "sandbox.json"


def lock_path(directory: Path | None = None) -> Path:
    return (directory or data_dir()) / "sandbox.lock"


@dataclass(frozen=True)
class RunningSandbox:
    """What a refused second run can tell about the first one."""

    directory: Path
    pid: int | None
    console_url: str | None = None
    bot_url: str | None = None

    def describe(self) -> str:
        where = [f"pid {self.pid}"] if self.pid else []
        if self.console_url:
            where.append(f"console {self.console_url}/")
        if self.bot_url:
            where.append(f"bot {self.bot_url}")
        if not self.console_url:
            where.append("still starting")
        return (f"A sandbox is already running ({', '.join(where)}) with data directory "
                f"{self.directory}. Stop it first (Ctrl-C in its terminal), or give this one "
                f"its own ROLLBACK_DATA_DIR, PORT and SANDBOX_CONSOLE_PORT.")


class SandboxLock:
    """An exclusive ``flock`` on ``<data dir>/sandbox.lock`` for the sandbox's lifetime.

    The kernel drops the lock when the process ends however it ends (SIGKILL included), so a
    leftover file never blocks the next run, and the lock is taken before anything is
    touched (the sandbox database is dropped and recreated at start). The descriptor is not
    inherited by child processes (PostgreSQL), which could otherwise keep it held.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = lock_path(directory)
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid()}).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def holder(self) -> RunningSandbox:
        """The running sandbox as its lock and state files describe it."""
        pid = _read_json(self.path).get("pid")
        state = _read_json(self.directory / "sandbox.json")
        if pid is None or state.get("pid") != pid:
            state = {}  # a state file left by an earlier, killed run
        return RunningSandbox(self.directory, pid if isinstance(pid, int) else None,
                              state.get("console_url"), state.get("bot_url"))


def sandbox_running(directory: Path | None = None) -> bool:
    """Whether a sandbox holds the lock of ``directory`` (the data dir by default)."""
    path = lock_path(directory)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on ``port`` (a bind test like the servers' own)."""
    if port == 0:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "taken"
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def port_message(port: int, what: str, variable: str) -> str:
    return (f"Port {port} ({what}) is already in use; set {variable} to a free port "
            f"and run again.")


def remove_embedded_database(directory: Path) -> None:
    """Stop the embedded PostgreSQL under ``directory`` (if this process started one) and
    delete its cluster (~46 MB): for a throwaway directory such as a drill's."""
    from pgserver import postgres_server  # the embedded server's own registry of handles

    pgdata = (directory / "pgdata").resolve()
    server = postgres_server.PostgresServer._instances.get(pgdata)
    if server is not None:
        server.cleanup()  # cleanup_mode "stop": pg_ctl stop when this is its last handle
        atexit.unregister(server._cleanup)  # nothing left to stop at exit
    shutil.rmtree(pgdata, ignore_errors=True)


def fresh_sandbox_database(directory: Path) -> str:
    """A new ``rollback_sandbox`` database on the embedded server (never a user's DB)."""
    admin = embedded_database_url(directory)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SANDBOX_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{SANDBOX_DB}"')
    params = conninfo.conninfo_to_dict(admin)
    params["dbname"] = SANDBOX_DB
    return conninfo.make_conninfo("", **params)


# The Fly adapter's token, as production reads it (``fly.token_env``): the emulator's deploy
# token, set in the sandbox's own environment only; a user's FLY_API_TOKEN is never read.
FLY_TOKEN_ENV = "SANDBOX_FLY_API_TOKEN"
# boto3's default credential chain (the load-balancer step's ELBv2 client) finds these; moto
# accepts any. Distinctive values, so the tests' secret scan would notice one in Slack, and a
# user's own AWS credentials or profile are never picked up by the sandbox.
SANDBOX_AWS_ENV = {"AWS_ACCESS_KEY_ID": "sandbox-moto-key-id",
                   "AWS_SECRET_ACCESS_KEY": "sandbox-moto-secret-key",
                   "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None}
# The PagerDuty routing key variable of the sandbox's services, and its value: a key for the
# PagerDuty emulator only (32 characters, as PagerDuty's integration keys), distinctive so
# the tests' secret scan would notice it in Slack.
PAGERDUTY_KEY_ENV = "SANDBOX_PAGERDUTY_ROUTING_KEY"
PAGERDUTY_KEY = "SANDBOXPAGERDUTYKEY0000000000032"
# The same for the Statuspage emulator's API key (the status page a P0/P1 request opens).
STATUSPAGE_KEY_ENV = "SANDBOX_STATUSPAGE_API_KEY"
STATUSPAGE_KEY = "sandbox-statuspage-key"
# ... and the GitHub emulator's token (post-mortem pull requests in SANDBOX_REPOSITORY).
GITHUB_TOKEN_ENV = "SANDBOX_GITHUB_TOKEN"
GITHUB_TOKEN = "ghp_sandboxgithubtoken000000000000000000"
SANDBOX_REPOSITORY = "hotel/hotel-voice-bot"
TARGET_GROUP = "hotel-voice-bot-ecs"
BAD_HEALTH_PATH = "/api/v2/health"  # what the bad release (ECS v4) registered
RESTORED_HEALTH_PATH = "/api/health"  # what v3 answers on: the rollback's load-balancer step


def set_environment() -> dict[str, str | None]:
    """Put the Fly token and the dummy AWS credentials in this process's environment; the
    previous values, for ``restore_environment``."""
    from sandbox.fly import DEFAULT_DEPLOY_TOKEN

    values = {**SANDBOX_AWS_ENV, FLY_TOKEN_ENV: DEFAULT_DEPLOY_TOKEN}
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return saved


def restore_environment(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


class PlatformWorld:
    """The ECS emulator (moto; ELBv2 and CloudWatch on the same server) and the Fly emulator
    (Machines API, GraphQL releases, logs, Prometheus), each seeded with the demo app running
    its bad release: ECS task definition v4 (hot CPU/memory; the target group's health check
    on v4's path), Fly release v5 (health checks failing). ``config`` holds the services'
    ``ecs``/``fly``/``load_balancer`` blocks for ``sandbox_config``; ``platforms`` the
    adapters. While it runs, the process environment holds the Fly token and dummy AWS
    credentials (restored by ``stop``)."""

    def __init__(self, *, environment: dict[str, str | None] | None = None) -> None:
        """``environment``: what ``set_environment()`` returned when the caller set it (a
        caller starting this on a thread must: changing the environment while another thread
        forks, e.g. PostgreSQL's initdb, can hand the child a broken one). Then the caller
        restores it (``restore_environment``), not ``stop``."""
        from sandbox.ecs import EcsEmulator
        from sandbox.fly import FlyEmulator, seed_hotel_voice_bot

        self._saved_env = set_environment() if environment is None else {}
        self.ecs: EcsEmulator | None = None
        self.fly: FlyEmulator | None = None
        try:
            self.ecs = EcsEmulator().start()
            self.seeded: Seeded = self.ecs.seed_hotel_voice_bot()
            good, bad = self.seeded.arns[-2:]
            self.ecs.set_usage(bad, cpu_percent=96.0, memory_percent=88.0)
            self.ecs.set_usage(good, cpu_percent=31.0, memory_percent=45.0)
            self.target_group_arn = self._target_group()
            # Machines take a moment to replace, so the rollout shows in the console.
            self.fly = FlyEmulator(start_delay=0.3).start()
            seed_hotel_voice_bot(self.fly)
        except BaseException:
            self.stop()
            raise

    def _target_group(self) -> str:
        """The ECS service's target group, its health check on the bad release's path. moto's
        backends are process-global, so a group left by an earlier world is reused."""
        assert self.ecs is not None
        elbv2 = self.ecs.client("elbv2")
        try:
            arn = str(elbv2.describe_target_groups(Names=[TARGET_GROUP])
                      ["TargetGroups"][0]["TargetGroupArn"])
        except elbv2.exceptions.TargetGroupNotFoundException:
            vpc = self.ecs.client("ec2").create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            arn = str(elbv2.create_target_group(
                Name=TARGET_GROUP, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip",
                HealthCheckProtocol="HTTP", HealthCheckPath=BAD_HEALTH_PATH,
            )["TargetGroups"][0]["TargetGroupArn"])
        elbv2.modify_target_group(TargetGroupArn=arn, HealthCheckPath=BAD_HEALTH_PATH)
        return arn

    @property
    def config(self) -> dict[str, Any]:
        assert self.ecs is not None and self.fly is not None
        return {
            "ecs": {"cluster": self.seeded.cluster, "service": self.seeded.service,
                    "family": self.seeded.family, "region": self.ecs.region,
                    "endpoint_url": self.ecs.endpoint_url, "rollout_timeout_seconds": 60},
            "fly": {"app": "hotel-voice-bot", "org": "hotel", "api_url": self.fly.url,
                    "platform_url": self.fly.url, "token_env": FLY_TOKEN_ENV,
                    "rollout_timeout_seconds": 60},
            "load_balancer": {"target_group_arn": self.target_group_arn,
                              "health_check_path": RESTORED_HEALTH_PATH,
                              "endpoint_url": self.ecs.endpoint_url, "timeout_seconds": 5},
        }

    def platforms(self) -> dict[str, Platform]:
        from platforms.ecs import EcsPlatform
        from platforms.fly import FlyPlatform

        assert self.ecs is not None and self.fly is not None
        return {"ecs": EcsPlatform(client=self.ecs.client(), poll_interval=0.5),
                "fly": FlyPlatform(token=os.environ[FLY_TOKEN_ENV], api_url=self.fly.url,
                                   platform_url=self.fly.url, check_interval=0.2)}

    def stop(self) -> None:
        if self.fly is not None:
            self.fly.stop()
        if self.ecs is not None:
            self.ecs.stop()
        restore_environment(self._saved_env)
        self._saved_env = {}


class _Starting:
    """``PlatformWorld()`` built on a thread: ``result()`` waits for it (raising what it
    raised); ``discard()`` waits and stops it, for a sandbox that failed meanwhile."""

    def __init__(self) -> None:
        self._world: PlatformWorld | None = None
        self._error: BaseException | None = None
        self.environment = set_environment()  # here, before the thread: see PlatformWorld
        self._thread = threading.Thread(target=self._build, name="sandbox-platforms",
                                        daemon=True)
        self._thread.start()

    def _build(self) -> None:
        try:
            self._world = PlatformWorld(environment=self.environment)
        except BaseException as exc:  # handed to result()
            self._error = exc

    def result(self) -> PlatformWorld:
        self._thread.join()
        if self._error is not None:
            restore_environment(self.environment)
            raise self._error
        assert self._world is not None
        self._world._saved_env = self.environment  # its stop() restores it from now on
        return self._world

    def discard(self) -> None:
        self._thread.join()
        if self._world is not None:
            self._world.stop()
        restore_environment(self.environment)


class SandboxWorld:
    """The Kubernetes emulator (seeded with a bad release), the demo service whose health
    follows the Deployment's image, and the bot stack driving the real adapter. With
    ``platforms`` (``python -m sandbox run``; off by default, it adds a few seconds) also the
    ECS and Fly emulators (``PlatformWorld``) behind ``hotel-voice-bot-ecs`` and ``-fly``.

    With ``watcher`` (keys of ``services.<name>.watcher``) a real Prometheus scrapes the demo
    every second and the release watcher reads it; ``bad_release=False`` starts on the last
    good release so a drill can deploy the bad one (``kube_seed.deploy_bad_release``).
    ``database_url``: a migrated database to use (default ``DATABASE_URL``, else a fresh
    sandbox database on the embedded server)."""

    def __init__(self, *, directory: Path, bot_port: int = 0, rollout_seconds: float = 3.0,
                 monitoring: dict[str, Any] | None = None, traffic_rps: float = 5.0,
                 clock: Clock = utcnow, bad_release: bool = True,
                 watcher: dict[str, Any] | None = None, error_rate_window: str = "5s",
                 prometheus_binary: str | None = None, platforms: bool = False,
                 database_url: str | None = None) -> None:
        # The ECS and Fly emulators start and seed on a thread while Kubernetes seeds here
        # (both mostly wait for simulated rollouts), so `make run` pays for the slower one.
        # Set before any thread starts (see ``PlatformWorld``); ``stop`` restores it.
        self._saved_pagerduty = {PAGERDUTY_KEY_ENV: os.environ.get(PAGERDUTY_KEY_ENV),
                                 STATUSPAGE_KEY_ENV: os.environ.get(STATUSPAGE_KEY_ENV),
                                 GITHUB_TOKEN_ENV: os.environ.get(GITHUB_TOKEN_ENV)}
        os.environ[PAGERDUTY_KEY_ENV] = PAGERDUTY_KEY
        os.environ[STATUSPAGE_KEY_ENV] = STATUSPAGE_KEY
        os.environ[GITHUB_TOKEN_ENV] = GITHUB_TOKEN
        self.pagerduty = PagerDutyEmulator().start()  # escalations page it: GET /_emulator/alerts
        # A P0/P1 request on hotel-voice-bot opens an incident: GET /_emulator/incidents
        self.statuspage = StatuspageEmulator(api_key=STATUSPAGE_KEY).start()
        # Stakeholder e-mail and the post-mortem meeting: GET /_emulator/messages
        self.mailbox = SandboxMailbox().start()
        # P0/P1 post-mortems become pull requests in SANDBOX_REPOSITORY there
        self.github = GithubEmulator(tokens={GITHUB_TOKEN}).start()
        self.github.add_repo(SANDBOX_REPOSITORY)
        starting = _Starting() if platforms else None
        self.others: PlatformWorld | None = None
        self.prometheus: SandboxPrometheus | None = None
        undo: list[Callable[[], None]] = []  # a failure leaves no server or process running
        undo.append(self.pagerduty.stop)
        undo.append(self.statuspage.stop)
        undo.append(self.mailbox.stop)
        undo.append(self.github.stop)
        undo.append(lambda: restore_environment(self._saved_pagerduty))
        try:
            self.kube = KubeEmulator(seed="sandbox", rollout_duration=rollout_seconds).start()
            undo.append(self.kube.stop)
            seed_incident(self.kube, bad_release=bad_release)
            self.demo = DemoService(
                version_source=lambda: self.kube.current_image(NAMESPACE, DEPLOYMENT),
                bad_versions={BAD}, bad_health_delay=1.0, traffic_rps=traffic_rps).start()
            undo.append(self.demo.stop)
            if watcher is not None:  # no Prometheus binary here: fails, and undoes the rest
                self.prometheus = SandboxPrometheus(
                    targets=[self.demo.target], workdir=directory / "prometheus",
                    binary=prometheus_binary).start()
                undo.append(self.prometheus.stop)
            self._client = self.kube.api_client()
            undo.append(self._client.close)
            database_url = (database_url or os.environ.get("DATABASE_URL")
                            or fresh_sandbox_database(directory))
            migrate(database_url)
            if starting is not None:
                self.others, starting = starting.result(), None
                undo.append(self.others.stop)
            # A drill's watcher counts seconds, not minutes: a rate window of seconds keeps the
            # ratio from lagging the release (and the rollback) by half a minute.
            prometheus = {"prometheus_url": self.prometheus.url, "watcher": watcher,
                          "error_rate_window": error_rate_window} if self.prometheus else {}
            others = self.others.config if self.others is not None else {}
            config = sandbox_config(platform="kubernetes", kubernetes=kubernetes_target(),
                                    demo_url=self.demo.url, monitoring=monitoring,
                                    postmortem_dir=str(directory / "post-mortems"), **prometheus,
                                    pagerduty={"routing_key_env": PAGERDUTY_KEY_ENV,
                                               "events_url": self.pagerduty.events_url},
                                    statuspage={"api_url": self.statuspage.api_url,
                                                "page_id": self.statuspage.page_id,
                                                "api_key_env": STATUSPAGE_KEY_ENV,
                                                "component_id": "hotel-voice-bot"},
                                    smtp=self.mailbox.smtp_config(),
                                    github={"repository": SANDBOX_REPOSITORY,
                                            "token_env": GITHUB_TOKEN_ENV,
                                            "api_url": self.github.api_url},
                                    **others)
            adapters: dict[str, Platform] = {
                "kubernetes": KubernetesPlatform(api_client=self._client, request_timeout=10.0),
                **(self.others.platforms() if self.others is not None else {})}
            self.config, self.database_url, self.platforms = config, database_url, adapters
            self.stack = SandboxStack(config=config, database_url=database_url, bot_port=bot_port,
                                      platforms=self.platforms, clock=clock)
        except BaseException:
            if starting is not None:
                starting.discard()
            for stop in reversed(undo):
                stop()
            raise

    def start(self) -> SandboxWorld:
        self.stack.start()
        return self

    def run_auto(self, request: dict[str, Any]) -> dict[str, Any]:
        """``rollback-bot auto`` against this world (``python -m sandbox auto``): the product's
        own command wiring (``build_auto``) on the world's database, cluster and Slack
        emulator, so its request, approval and thread show in the console like a person's."""
        from bot.observability import scrub
        from bot.runtime.app import build_auto
        from bot.runtime.settings import Settings

        service = str(request.get("service"))
        if service not in self.config.services:  # as the product's CLI says it: exit 2
            return {"ok": True, "exit_code": 2, "log": "", "result": {
                "service": service, "outcome": "usage", "exit_code": 2,
                "reason": f"Unknown service `{service}`; configured: "
                          f"{', '.join(sorted(self.config.services))}."}}
        emulator = self.stack.emulator
        automation = self.config.automation.model_copy(
            update={"channel": emulator.channel_id(SANDBOX_CHANNEL)})
        config = self.config.model_copy(update={"automation": automation})
        settings = Settings(slack_bot_token=DEFAULT_BOT_TOKEN, slack_signing_secret=None,
                            slack_api_url=emulator.base_url, database_url=self.database_url)
        lines = io.StringIO()
        auto, core = build_auto(settings, config=config, stream=lines,
                                platforms=self.platforms)
        try:
            result = auto.run(service, dry_run=bool(request.get("dry_run")),
                              timeout=request.get("timeout"), settle=request.get("settle"),
                              severity=request.get("severity"), reason=request.get("reason"))
        finally:
            core.store.close()
        return {"ok": True, "exit_code": int(result.exit_code), "log": lines.getvalue(),
                "result": scrub.scrub_data(result.as_json())}

    def stop(self) -> None:
        self.stack.stop()
        if self.prometheus is not None:
            self.prometheus.stop()
        self.demo.stop()
        self._client.close()
        self.kube.stop()
        if self.others is not None:
            self.others.stop()
        self.pagerduty.stop()
        self.statuspage.stop()
        self.mailbox.stop()
        self.github.stop()
        restore_environment(self._saved_pagerduty)


def banner(world: SandboxWorld, bot_url: str, slack_url: str, console_url: str,
           console_host: str = CONSOLE_HOST) -> str:
    """What ``python -m sandbox run`` prints once everything listens (its "ready" line is
    the last: "Press Ctrl-C to stop.")."""
    lines = [
        "",
        "rollback-bot sandbox is running (no Slack credentials set; everything is local).",
        f"  bot:      {bot_url}/slack/events   health: {bot_url}/healthz",
        f"  Slack:    emulator at {slack_url}",
        f"  cluster:  Kubernetes API emulator at {world.kube.url} (kubectl works against it)",
    ]
    others = world.others
    if others is not None and others.ecs is not None and others.fly is not None:
        lines += [
            f"  ECS:      ECS emulator (moto) at {others.ecs.endpoint_url} (aws --endpoint-url;"
            f" ELBv2, CloudWatch, Logs)",
            f"  Fly:      Fly emulator at {others.fly.url} (Machines API, GraphQL releases, logs,"
            f" Prometheus)",
        ]
    lines.append(f"  PagerDuty: Events API v2 emulator at {world.pagerduty.events_url} "
                 f"(escalations page it; alerts at {world.pagerduty.base_url}/_emulator/alerts)")
    page_root = world.statuspage.api_url.removesuffix("/v1")
    lines.append(f"  status page: Statuspage emulator at {world.statuspage.api_url} (a P0/P1 "
                 f"request on {DEPLOYMENT} opens an incident; its timeline at "
                 f"{page_root}/_emulator/incidents)")
    lines.append(f"  e-mail:   SMTP relay on 127.0.0.1:{world.mailbox.port} (stakeholder notices, "
                 f"the post-mortem meeting; received at {world.mailbox.url})")
    lines.append(f"  GitHub:   emulator at {world.github.api_url} (P0/P1 post-mortems become pull "
                 f"requests in {SANDBOX_REPOSITORY}: GET /repos/{SANDBOX_REPOSITORY}/pulls?"
                 f"state=all with `Authorization: Bearer {GITHUB_TOKEN}`)")
    lines.append("  services:")
    lines.append(f"    {SERVICE}      Kubernetes, demo at {world.demo.url} "
                 f"(running the bad release {BAD})")
    if others is not None:
        lines += [
            f"    {ECS_SERVICE}  ECS service {others.seeded.cluster}/{others.seeded.service} "
            f"(running the bad task definition v{len(others.seeded.arns)})",
            f"    {FLY_SERVICE}  Fly app hotel-voice-bot (running the bad release v5)",
        ]
    lines += [
        f"  console:  {console_url}/   (open in a browser)",
        *([] if console_host in ("127.0.0.1", "localhost", "::1") else [
            f"            listening on {console_host}: the console has no login and acts as "
            f"any sandbox user; anyone who can reach it can"]),
        "Try:",
        '  .venv/bin/python -m sandbox say "/rollback help"',
        f'  .venv/bin/python -m sandbox say "/rollback {SERVICE} --severity P1 --reason drill"',
        "  .venv/bin/python -m sandbox auto hotel-voice-bot   (rollback-bot auto, the cron job)",
    ]
    if others is not None:
        lines += [
            f'  .venv/bin/python -m sandbox say "/rollback {FLY_SERVICE} --severity P0"',
            f'  .venv/bin/python -m sandbox say "/rollback history {ECS_SERVICE} --revision 3"',
        ]
    lines += ["Press Ctrl-C to stop.", ""]
    return "\n".join(lines)


def run_sandbox(*, port: int | None = None, console_host: str | None = None) -> int:
    """Serve the sandbox until SIGINT/SIGTERM. Exit 1 with one line on stderr, having
    touched nothing, when a sandbox already runs with this data dir or a port is taken.

    The console listens on ``console_host`` (else ``SANDBOX_CONSOLE_HOST``, else 127.0.0.1).
    It has no login and acts as any sandbox user with the sandbox's signing secret: another
    address exposes that to whoever can reach it (a container's port, a trusted LAN)."""
    directory = data_dir()
    console_host = console_host or os.environ.get("SANDBOX_CONSOLE_HOST") or CONSOLE_HOST
    directory.mkdir(parents=True, exist_ok=True)
    bot_port = port if port is not None else int(os.environ.get("PORT", "3000"))
    console_port = int(os.environ.get("SANDBOX_CONSOLE_PORT", "3001"))
    bot_taken = port_message(bot_port, "the bot's HTTP port",
                             "--port" if port is not None else "PORT")
    console_taken = port_message(console_port, "the sandbox console", "SANDBOX_CONSOLE_PORT")
    lock = SandboxLock(directory)
    if not lock.acquire():
        print(lock.holder().describe(), file=sys.stderr)
        return 1
    try:
        for number, host, message in ((bot_port, "127.0.0.1", bot_taken),
                                      (console_port, console_host, console_taken)):
            if port_taken(number, host):
                print(message, file=sys.stderr)
                return 1
        return _serve(directory, bot_port, console_port, console_host=console_host,
                      bot_taken=bot_taken, console_taken=console_taken)
    finally:
        lock.release()


def _serve(directory: Path, bot_port: int, console_port: int, *, console_host: str,
           bot_taken: str, console_taken: str) -> int:
    world = SandboxWorld(directory=directory, bot_port=bot_port, platforms=True)
    console: Console | None = None
    path = state_path()
    try:
        try:
            world.start()
        except PortInUse:  # taken between the check and the bind
            print(bot_taken, file=sys.stderr)
            return 1
        stack = world.stack
        assert stack.driver is not None and stack.server is not None
        try:
            console = Console(emulator=stack.emulator, driver=stack.driver, host=console_host,
                              port=console_port, auto=world.run_auto).start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            print(console_taken, file=sys.stderr)
            return 1
        info: dict[str, Any] = {"bot_url": stack.server.url, "console_url": console.url,
                                "slack_api_url": stack.emulator.base_url, "pid": os.getpid()}
        path.write_text(json.dumps(info))
        print(banner(world, stack.server.url, stack.emulator.base_url, console.url,
                     console_host), flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        return 0
    finally:
        if console is not None:
            console.stop()
        world.stop()
        if console is not None:
            path.unlink(missing_ok=True)
