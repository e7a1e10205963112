"""The load balancer's target group health check (runbook Step 5.2) through boto3's ``elbv2``:
read the health-check path, set it. Every failure is one ``LoadBalancerError`` that says
whether another attempt may help.
"""

# Facts from botocore's elbv2 model (botocore/data/elbv2/2015-12-01/service-2.json):
# ModifyTargetGroup's errors are TargetGroupNotFound and InvalidConfigurationRequest (both
# sender faults, 400), the protocol is "query" so throttling comes back as "Throttling";
# HealthCheckPath is 1..1024 characters and applies to HTTP/HTTPS health checks only (the
# API reference of ModifyTargetGroup: "[HTTP/HTTPS health checks] The destination for health
# checks on the targets"), so a TCP health check is refused here before any write.
#
# botocore retries nothing (max_attempts=1): the executor's retry policy is the one budget
# (durable across executors, Cancel-aware), and ModifyTargetGroup sets a value, so an
# attempt the bot gave up on that lands later writes the same path again.

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from bot.integrations.errors import LoadBalancerError

__all__ = ["PATH_PROTOCOLS", "HealthCheck", "TargetGroups"]

# Sender faults that will not get better by retrying; anything else 4xx is treated alike,
# 5xx and throttling are worth another attempt.
_TRANSIENT_CODES = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded",
                              "ServiceUnavailable", "InternalFailure", "RequestTimeout"})
PATH_PROTOCOLS = ("HTTP", "HTTPS")


@dataclass(frozen=True)
class HealthCheck:
    """A target group's health check as ELBv2 describes it."""

    target_group: str  # its name, for messages
    protocol: str | None
    path: str | None


class TargetGroups:
    """ELBv2 target groups in one region (``endpoint_url`` for a stand-in such as moto);
    credentials from boto3's default chain, like the ECS adapter."""

    def __init__(self, *, region: str, endpoint_url: str | None = None,
                 timeout: float = 10.0, client: Any = None) -> None:
        self._client = client or boto3.client(
            "elbv2", region_name=region, endpoint_url=endpoint_url,
            config=Config(retries={"max_attempts": 1, "mode": "standard"},
                          connect_timeout=timeout, read_timeout=timeout))

    def health_check(self, arn: str) -> HealthCheck:
        found = self._call("DescribeTargetGroups", arn, lambda: self._client.describe_target_groups(
            TargetGroupArns=[arn]))
        groups = found.get("TargetGroups") or []
        if not groups:
            raise LoadBalancerError(f"target group {arn} not found", transient=False,
                                    code="TargetGroupNotFound")
        return _health_check(groups[0], arn)

    def set_health_check_path(self, arn: str, path: str) -> HealthCheck:
        """ModifyTargetGroup with only ``HealthCheckPath``: the rest of the health check
        (port, protocol, thresholds, matcher) stays as it is."""
        changed = self._call("ModifyTargetGroup", arn, lambda: self._client.modify_target_group(
            TargetGroupArn=arn, HealthCheckPath=path))
        return _health_check((changed.get("TargetGroups") or [{}])[0], arn)

    @staticmethod
    def _call(operation: str, arn: str, call: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = call()
            return result
        except NoCredentialsError:
            raise LoadBalancerError(f"{operation}: no AWS credentials found (boto3's default "
                                    "chain)", transient=False) from None
        except ClientError as exc:
            error = exc.response.get("Error") or {}
            code = str(error.get("Code") or "")
            status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
                         or 0)
            transient = code in _TRANSIENT_CODES or status >= 500
            message = str(error.get("Message") or code)[:300]
            if code == "TargetGroupNotFound":
                message = f"target group {arn} not found"
            raise LoadBalancerError(f"{operation}: {code or status}: {message}",
                                    transient=transient, code=code or None) from None
        except BotoCoreError as exc:  # connection refused, timeouts: worth another attempt
            raise LoadBalancerError(f"{operation}: {type(exc).__name__}", transient=True) \
                from None


def _health_check(group: dict[str, Any], arn: str) -> HealthCheck:
    """A TargetGroup as DescribeTargetGroups and ModifyTargetGroup both return it."""
    return HealthCheck(str(group.get("TargetGroupName") or arn),
                       group.get("HealthCheckProtocol"), group.get("HealthCheckPath"))
