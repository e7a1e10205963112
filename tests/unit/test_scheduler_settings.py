"""``scheduler.workers``: validated like every key (``rollback-bot check-config``)."""

from __future__ import annotations

import pytest

from bot.domain.errors import ConfigError
from sandbox.config import parse_sandbox_config, sandbox_config_dict


def _parse(scheduler: dict[str, object]) -> object:
    data = sandbox_config_dict()
    data["scheduler"] = scheduler
    return parse_sandbox_config(data)


def test_the_pool_size_defaults_to_16_and_can_be_set() -> None:
    assert parse_sandbox_config(sandbox_config_dict()).scheduler.workers == 16
    assert _parse({"workers": 32}).scheduler.workers == 32  # type: ignore[attr-defined]


@pytest.mark.parametrize(("block", "said"), [
    ({"workers": 0}, "scheduler.workers: Input should be greater than or equal to 1"),
    ({"workers": 1000}, "scheduler.workers: Input should be less than or equal to 256"),
    ({"threads": 8}, "scheduler.threads: unknown key"),
])
def test_bad_values_and_unknown_keys_name_their_path(block: dict[str, object], said: str
                                                     ) -> None:
    with pytest.raises(ConfigError) as err:
        _parse(block)
    assert said in str(err.value)
