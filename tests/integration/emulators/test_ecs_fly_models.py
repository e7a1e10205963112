"""Pure pieces of the ECS and Fly emulators: the circuit-breaker threshold, StopRequest
timeouts and tag-to-digest resolution."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.ecs.simulator import failure_threshold
from sandbox.fly.state import FlyError, go_duration, image_ref


@pytest.mark.parametrize(("desired", "config", "expected"), [
    (1, None, 3), (3, None, 3), (6, None, 3), (7, None, 4), (10, None, 5),
    (1000, None, 200),  # BOUNDED_PERCENT 50: at least 3, at most 200
    (10, {"type": "COUNT", "value": 1}, 1),
    (1000, {"type": "UNBOUNDED_PERCENT", "value": 50}, 500),
    (2, {"type": "UNBOUNDED_PERCENT", "value": 10}, 1),
    (10, {"type": "BOUNDED_PERCENT", "value": 100}, 10),
])
def test_circuit_breaker_threshold(desired: int, config: dict[str, Any] | None,
                                   expected: int) -> None:
    assert failure_threshold(desired, config) == expected


def test_stop_request_timeout_is_a_go_duration_or_seconds() -> None:
    assert go_duration("10s") == 10.0
    assert go_duration("500ms") == 0.5
    assert go_duration("2m") == 120.0
    assert go_duration(3) == 3.0
    assert go_duration(None) is None and go_duration("") is None
    with pytest.raises(FlyError):
        go_duration("soon")


def test_image_ref_resolves_a_tag_through_the_registry() -> None:
    pinned = image_ref("registry.fly.io/app:1.0@sha256:abc")
    assert (pinned["registry"], pinned["repository"], pinned["tag"], pinned["digest"]) == \
        ("registry.fly.io", "app", "1.0", "sha256:abc")
    resolved = image_ref("registry.fly.io/app:1.0", {"registry.fly.io/app:1.0": "sha256:abc"})
    assert resolved["digest"] == "sha256:abc"
    unknown = image_ref("registry.fly.io/app:2.0", {"registry.fly.io/app:1.0": "sha256:abc"})
    assert unknown["digest"].startswith("sha256:") and unknown["digest"] != "sha256:abc"
