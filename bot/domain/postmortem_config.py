"""The ``postmortem:`` block of a service: where its post-mortems are filed.

``github:`` names the repository the team keeps them in; the bot then opens a pull request
there with the skeleton at ``docs/post-mortems/YYYY-MM-DD-<slug>.md``
(``bot.aftercare.postmortem_pr``). The token is never in the file: ``token_env`` names the
environment variable read when the pull request is opened (``bot.domain.config.secret``).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator

from bot.domain.mail_config import check_env_name

# GitHub's owner (user or organisation: letters, digits, single hyphens) and repository names
# (letters, digits, ".", "-", "_"); anything else could not be one, or would bend the URL path.
_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,200}")


class GithubTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    repository: str  # owner/name
    base_branch: str = "main"
    token_env: str  # the variable holding a token that may push branches and open PRs
    api_url: str = "https://api.github.com"  # GitHub Enterprise: https://HOST/api/v3

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if not _REPOSITORY.fullmatch(value) or value.endswith((".", "/..")):
            raise ValueError(f"{value!r} is not a GitHub repository (like owner/name)")
        return value

    @field_validator("base_branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        if not _BRANCH.fullmatch(value) or ".." in value or value.startswith(("/", "-")):
            raise ValueError(f"{value!r} is not a branch name")
        return value

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, value: str) -> str:
        check_env_name(value)
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")


class PostmortemConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    github: GithubTarget | None = None
