"""Dockerfile: read as text (no Docker engine here) and held to what production expects.

Slim Python >= 3.11, an unprivileged user before the process starts, a stdlib health check on
``handlers.ids.HEALTHZ_PATH``, ``rollback-bot serve``, EXPOSE equal to the PORT default, no
secret baked into the image, and the product only: no sandbox (development-only emulators) and
none of its dependencies (moto), no embedded PostgreSQL (pgserver); pg_dump/pg_restore from
Debian's postgresql-client; every path the process writes under ROLLBACK_DATA_DIR.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
import yaml

from bot.aftercare import postmortem
from bot.domain.config import AftercareSettings
from handlers import ids

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PYPROJECT = REPO_ROOT / "pyproject.toml"

SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY|CREDENTIAL", re.I)
SECRET_VALUE = re.compile(r"xox[abposr]-|xapp-|AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY")
SLIM_PYTHON = re.compile(r"^(?:docker\.io/)?(?:library/)?python:3\.(\d+)(?:\.\d+)?-slim\b")


@dataclass(frozen=True)
class Instruction:
    stage: int  # index of the FROM this instruction belongs to
    keyword: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions: continuations joined, comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are removed by Docker
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, args.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def env_pairs(args: str) -> dict[str, str]:
    """``ENV a=1 b=2`` or the legacy ``ENV a 1`` form."""
    tokens = shlex.split(args)
    if tokens and "=" not in tokens[0]:
        return {tokens[0]: " ".join(tokens[1:])}
    return dict(token.split("=", 1) for token in tokens)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final(instructions: list[Instruction]) -> list[Instruction]:
    """Instructions of the last stage: the image that actually ships."""
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected exactly one {keyword} in the final stage, got {found}"
    return found[0]


def env(stage: list[Instruction]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for i in stage:
        if i.keyword == "ENV":
            merged.update(env_pairs(i.args))
    return merged


def test_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse("# c\nFROM a AS b\nRUN x \\\n  # note\n  && y\nENV A=1 B='two words'\n")
    assert [(i.stage, i.keyword) for i in parsed] == [(0, "FROM"), (0, "RUN"), (0, "ENV")]
    assert parsed[1].args.split() == ["x", "&&", "y"]
    assert env_pairs(parsed[2].args) == {"A": "1", "B": "two words"}
    assert env_pairs("LEGACY some value") == {"LEGACY": "some value"}


def test_every_stage_is_slim_python_3_11_or_newer(instructions: list[Instruction]) -> None:
    stage_names = set()
    bases = []
    for i in instructions:
        if i.keyword != "FROM":
            continue
        words = [w for w in i.args.split() if not w.startswith("--")]
        bases.append(words[0])
        if len(words) == 3 and words[1].upper() == "AS":
            stage_names.add(words[2].lower())
    assert bases, "no FROM"
    for base in bases:
        if base.lower() in stage_names:
            continue
        match = SLIM_PYTHON.match(base)
        assert match, f"{base} is not a python:3.x-slim image"
        assert int(match.group(1)) >= 11, f"{base}: Python >= 3.11 required (pyproject)"


def test_runs_as_unprivileged_uid_10001_before_the_process_starts(
    final: list[Instruction],
) -> None:
    keywords = [i.keyword for i in final]
    users = [(n, i.args) for n, i in enumerate(final) if i.keyword == "USER"]
    assert users, "the final stage never drops root"
    start = min(keywords.index(k) for k in ("ENTRYPOINT", "CMD") if k in keywords)
    index, user = users[-1]
    assert index < start, "USER must come before ENTRYPOINT/CMD"
    name = user.split(":")[0]
    assert name not in ("root", "0"), "the process must not run as root"
    created = " ".join(i.args for i in final if i.keyword == "RUN")
    assert name == "10001" or re.search(rf"--uid 10001\b.*\b{re.escape(name)}\b", created)


def test_healthcheck_probes_healthz_with_the_standard_library(final: list[Instruction]) -> None:
    check = only(final, "HEALTHCHECK").args
    assert ids.HEALTHZ_PATH in check
    assert "urllib.request" in check
    assert not re.search(r"\b(curl|wget)\b", check), "slim images ship neither curl nor wget"
    default_port = env(final)["PORT"]
    assert f"'PORT', '{default_port}'" in check, "probe falls back to the image's PORT default"


def test_entrypoint_runs_rollback_bot_serve(final: list[Instruction]) -> None:
    command = exec_form(only(final, "ENTRYPOINT").args) + exec_form(only(final, "CMD").args)
    assert command == ["rollback-bot", "serve"]
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "rollback-bot" in scripts["project"]["scripts"], "console script must exist"


def test_expose_matches_the_port_default(final: list[Instruction]) -> None:
    exposed = {p.split("/")[0] for i in final if i.keyword == "EXPOSE" for p in i.args.split()}
    values = env(final)
    assert exposed == {values["PORT"]} == {"3000"}
    assert values["PYTHONUNBUFFERED"] == "1"


def test_package_is_installed_without_pip_cache(instructions: list[Instruction]) -> None:
    runs = [i.args for i in instructions if i.keyword == "RUN"]
    assert any(re.search(r"pip install --no-cache-dir \.(\s|$)", r) for r in runs)


def test_no_secret_is_baked_into_the_image(instructions: list[Instruction]) -> None:
    for i in instructions:
        if i.keyword == "ENV":
            baked = [k for k, v in env_pairs(i.args).items() if SECRET_NAME.search(k) and v]
            assert not baked, f"secret-looking ENV baked into the image: {baked}"
        if i.keyword == "ARG":
            name, _, default = i.args.partition("=")
            assert not (SECRET_NAME.search(name) and default), f"ARG {name} has a secret default"
    assert not SECRET_VALUE.search(DOCKERFILE.read_text(encoding="utf-8"))


def copy_sources(instructions: list[Instruction]) -> list[str]:
    sources = []
    for i in instructions:
        if i.keyword not in ("COPY", "ADD"):
            continue
        words = i.args.split()
        if any(w.startswith("--from") for w in words):
            continue
        sources += [w.rstrip("/") for w in words if not w.startswith("--")][:-1]
    return sources


def test_copied_files_exist_and_are_not_dockerignored(instructions: list[Instruction]) -> None:
    sources = copy_sources(instructions)
    assert "rollback.example.yml" in sources
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
        excluded = [p for p in patterns if fnmatch.fnmatch(source, p.lstrip("/"))]
        assert not excluded, f"COPY {source} is excluded by .dockerignore {excluded}"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = set(DOCKERIGNORE.read_text(encoding="utf-8").split())
    assert {".git", ".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache"} <= patterns


def requirement_name(requirement: str) -> str:
    """``moto[server]>=5`` -> ``moto`` (PEP 503 normalised)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def test_the_image_carries_no_sandbox(instructions: list[Instruction]) -> None:
    """The sandbox is development-only: not copied, not in the build context, not packaged."""
    sources = copy_sources(instructions)
    assert sources, "no COPY"
    for source in sources:
        top = source.removeprefix("./").split("/")[0]
        assert top != "sandbox", f"COPY {source}: the sandbox must not be in the image"
        assert top not in (".", ""), f"COPY {source} would copy the whole tree, sandbox included"
    patterns = DOCKERIGNORE.read_text(encoding="utf-8").split()
    assert "sandbox" in patterns, ".dockerignore keeps sandbox/ out of the build context"
    setuptools = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]
    included = setuptools["packages"]["find"]["include"]
    assert not [p for p in included if fnmatch.fnmatch("sandbox", p)], included
    assert not [k for k in setuptools.get("package-data", {}) if k.split(".")[0] == "sandbox"]


def test_moto_is_not_a_runtime_requirement(instructions: list[Instruction]) -> None:
    """moto (the ECS emulator's backend) comes with the ``sandbox`` extra, which the image's
    plain ``pip install .`` does not install."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    runtime = {requirement_name(r) for r in project["dependencies"]}
    assert "moto" not in runtime, "moto is the sandbox's (the `sandbox` extra), not the product's"
    extras = project["optional-dependencies"]
    assert "moto" in {requirement_name(r) for r in extras["sandbox"]}
    installs = [i.args for i in instructions if i.keyword == "RUN" and "pip install" in i.args]
    assert installs and not any("[" in args for args in installs), (
        f"the image installs no extras: {installs}")


# ------------------------------------------------- PostgreSQL client, extras, writable paths
# Debian codenames whose postgresql-client is 17 or newer (bookworm's is 15, too old for a
# PostgreSQL 17 target): https://packages.debian.org/trixie/postgresql-client
PG17_DEBIAN = ("trixie", "forky")
DEPLOYMENT = REPO_ROOT / "deploy" / "deployment.yaml"


def test_pg_dump_comes_from_debian_postgresql_client(final: list[Instruction]) -> None:
    base = only(final, "FROM").args.split()[0]
    assert any(base.endswith(f"-{codename}") for codename in PG17_DEBIAN), (
        f"{base}: pin a Debian release whose postgresql-client is 17 or newer")
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    install = re.search(r"apt-get install\b([^&;]*)", runs)
    assert install and "postgresql-client" in install.group(1).split(), (
        "the final stage installs Debian's postgresql-client (pg_dump, pg_restore)")
    assert "--no-install-recommends" in install.group(1)
    assert "rm -rf /var/lib/apt/lists" in runs, "apt lists are not left in the image"


def test_embedded_postgresql_is_an_extra_the_image_skips(
        instructions: list[Instruction]) -> None:
    """pgserver (embedded PostgreSQL 16, and its too-old pg_dump) is the `embedded` extra."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert "pgserver" not in {requirement_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert {requirement_name(r) for r in extras["embedded"]} == {"pgserver"}
    assert "rollback-bot[embedded]" in extras["sandbox"], "`make run` keeps its embedded default"
    installs = [i.args for i in instructions if i.keyword == "RUN" and "pip install" in i.args]
    assert installs and not any("embedded" in args or "[" in args for args in installs)


def test_product_runs_without_pgserver(tmp_path: Path) -> None:
    """Every product module imports with pgserver absent (as in the image), and serving
    without DATABASE_URL then says what to do instead of an ImportError traceback."""
    probe = """
import importlib, pkgutil, sys
sys.modules["pgserver"] = None  # what an image without the `embedded` extra looks like
import bot, handlers, platforms
for package in (bot, handlers, platforms):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
from bot.persistence import db
try:
    db.resolve_database_url()
except RuntimeError as err:
    print(err)
else:
    raise SystemExit("embedded database started without pgserver")
"""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["ROLLBACK_DATA_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "DATABASE_URL is unset" in out.stdout and "rollback-bot[embedded]" in out.stdout


WRITE_LOCATIONS = ("HOME", "MPLCONFIGDIR", "TMPDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
                   "XDG_DATA_HOME", "XDG_STATE_HOME")


def test_every_write_location_is_under_the_data_dir(final: list[Instruction]) -> None:
    values = env(final)
    data_dir = PurePosixPath(values["ROLLBACK_DATA_DIR"])
    for name in WRITE_LOCATIONS:
        if name in values:
            path = PurePosixPath(values[name])
            assert path == data_dir or data_dir in path.parents, (
                f"{name}={path} is not under ROLLBACK_DATA_DIR={data_dir}")
    workdir = PurePosixPath(only(final, "WORKDIR").args)
    assert workdir not in data_dir.parents and data_dir != workdir
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    user = only(final, "USER").args.split(":")[0]
    assert re.search(rf"install -d -o {user} -g \d+ {re.escape(str(data_dir))}\b", runs), (
        "the data dir exists and belongs to the unprivileged user")
    assert "--create-home" not in runs, "a home outside the data dir would be read-only"


def test_postmortems_default_under_the_data_dir(final: list[Instruction],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = env(final)["ROLLBACK_DATA_DIR"]
    monkeypatch.setenv("ROLLBACK_DATA_DIR", data_dir)
    assert AftercareSettings().postmortem_dir is None
    folder = postmortem.directory(AftercareSettings().postmortem_dir)
    assert Path(data_dir) in folder.parents
    assert Path(data_dir) in postmortem.directory("post-mortems").parents


def test_deployment_mounts_a_volume_at_the_image_data_dir(final: list[Instruction]) -> None:
    data_dir = env(final)["ROLLBACK_DATA_DIR"]
    docs = [d for d in yaml.safe_load_all(DEPLOYMENT.read_text(encoding="utf-8")) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert data_dir in mounts and not mounts[data_dir].get("readOnly")
    assert {e["name"]: e.get("value") for e in container["env"]}["ROLLBACK_DATA_DIR"] == data_dir
