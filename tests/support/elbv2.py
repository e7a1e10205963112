"""moto's ELBv2 served over HTTP on 127.0.0.1 (an ephemeral port) for the load-balancer
step's tests, driven by the real boto3/botocore: a VPC and target groups to point at."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

REGION = "eu-west-1"
# Distinctive dummy credentials: boto3's default chain reads them from the environment (as
# the bot does in production); moto accepts any.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "moto-elbv2-key-id",
               "AWS_SECRET_ACCESS_KEY": "moto-elbv2-secret-key"}


@dataclass
class Elbv2:
    """A running moto server and a client on it."""

    url: str

    def client(self) -> Any:
        return boto3.client("elbv2", region_name=REGION, endpoint_url=self.url,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def target_group(self, name: str, *, path: str | None = "/v2/health",
                     protocol: str = "HTTP") -> str:
        """A target group in a fresh VPC; its ARN."""
        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=self.url,
                           aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        extra: dict[str, Any] = {"HealthCheckProtocol": protocol}
        if path is not None:
            extra["HealthCheckPath"] = path
        created = self.client().create_target_group(
            Name=name, Protocol=protocol, Port=8080, VpcId=vpc, TargetType="ip", **extra)
        return str(created["TargetGroups"][0]["TargetGroupArn"])

    def health_check_path(self, arn: str) -> str | None:
        group = self.client().describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]
        path: str | None = group.get("HealthCheckPath")
        return path


@contextmanager
def elbv2_server() -> Iterator[Elbv2]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        # moto's backends are global to the process: start from none (moto's reset API).
        httpx.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
        yield Elbv2(url)
    finally:
        server.stop()


def running_elbv2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Elbv2]:
    """For a test's fixture: the server, with the dummy credentials in the environment for
    boto3's chain (``yield from running_elbv2(monkeypatch)``)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with elbv2_server() as running:
        yield running
