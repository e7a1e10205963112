"""Session fixtures shared by every test folder: a real PostgreSQL and fresh databases.

``DATABASE_URL`` wins (CI may provide a server); otherwise an embedded PostgreSQL
(pgserver) runs under a temporary directory for the session. Every test is also checked
for secrets in the Slack calls it caused (``tests/secret_scan.py``). ``demo`` is the demo
service (``tests/support/demo.py``; a module may declare its own variant).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.secret_scan import SCANNER
from tests.support.database import fresh_database
from tests.support.demo import demo_fixture
from tests.support.smtp_server import SmtpServer

pytest_plugins: list[str] = ["tests.integration.pg_fixtures", "tests.integration.prom_fixtures"]
if (Path(__file__).parent / "integration" / "kube_fixtures.py").exists():
    pytest_plugins.append("tests.integration.kube_fixtures")


@pytest.fixture(scope="session")
def database_url(pg_url: str) -> str:
    """One server per session (``pg_url`` lives outside pytest's rotating tmp dirs, which a
    concurrent pytest session would delete under a running server)."""
    return pg_url


@pytest.fixture
def db(database_url: str) -> Iterator[str]:
    """A new, migrated database for one test; dropped afterwards
    (``tests.support.database.fresh_database``)."""
    with fresh_database(database_url, migrated=True) as url:
        yield url


demo = demo_fixture()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 for the test."""
    with SmtpServer() as server:
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    yield
    SCANNER.remember_env()  # while the test's monkeypatched environment is still in place


@pytest.fixture(autouse=True)
def no_secret_reaches_slack() -> Iterator[None]:
    """After every test: no recorded Slack call (or uploaded file) carries a secret."""
    yield
    findings = SCANNER.scan_new()
    if findings:
        pytest.fail("secret sent to Slack:\n  " + "\n  ".join(sorted({str(f) for f in findings})),
                    pytrace=False)


_late_findings: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Calls made after the last test's teardown (session fixtures) are checked too."""
    _late_findings.extend(str(f) for f in SCANNER.scan_new())
    if _late_findings:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for finding in _late_findings:
        terminalreporter.write_line(f"SECRET SENT TO SLACK: {finding}", red=True)
    terminalreporter.write_line(
        f"secret scan: {SCANNER.total_calls} Slack calls and {SCANNER.total_files} files from "
        f"{SCANNER.emulators} emulators checked against {len(SCANNER.known())} secret values")
