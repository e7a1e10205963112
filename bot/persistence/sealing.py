"""Secret snapshots at rest: the Secret items of a known-good configuration are sealed.

``known_good_config`` keeps what a later ``restore_config`` puts back. ConfigMaps are kept
as they are; every Secret item (``secret/<name>``) is replaced by an envelope before it
reaches the table:

* with ``ROLLBACK_BOT_SNAPSHOT_KEY`` set (one or more Fernet keys, comma-separated, the
  first one sealing): the item encrypted and authenticated (AES-128-CBC + HMAC-SHA256),
  the key's id (a digest, never the key) and the item's digest;
* without a key (or with an unusable one): the item's digest only. Nothing restorable is
  kept, and ``restore_config`` skips that Secret with the reason.

Opening refuses anything it cannot authenticate (a wrong or rotated-away key, a digest
that does not match): a Secret is restored exactly as recorded or not at all, never with
garbage. The housekeeping job re-seals rows under the first key (rotation) and seals rows
written before sealing existed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

KEY_ENV = "ROLLBACK_BOT_SNAPSHOT_KEY"
ENVELOPE = "sealed_secret"  # the one key of a sealed item (no Kubernetes field is named so)
SECRET_PREFIX = "secret/"


def digest(obj: Any) -> str:
    """A short content digest of a configuration object (also what the step journal keeps)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def key_id(key: bytes) -> str:
    return "k-" + hashlib.sha256(key).hexdigest()[:8]


@dataclass(frozen=True)
class Keys:
    """The keys from the environment: ``sealing`` seals, every one of ``all`` opens."""

    all: tuple[Fernet, ...]
    ids: tuple[str, ...]
    problem: str | None = None  # why there is no usable key

    @property
    def sealing_id(self) -> str | None:
        return self.ids[0] if self.ids else None


def load_keys(environ: Mapping[str, str] | None = None) -> Keys:
    raw = (os.environ if environ is None else environ).get(KEY_ENV, "")
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        return Keys((), (), f"{KEY_ENV} is not set")
    fernets, ids = [], []
    for index, part in enumerate(parts, start=1):
        try:
            fernets.append(Fernet(part.encode()))
        except (ValueError, TypeError):
            # Never echo the value: say which entry is malformed and what a key looks like.
            return Keys((), (), f"{KEY_ENV} entry {index} is not a Fernet key (32 url-safe "
                                "base64-encoded bytes: see docs/operations.md)")
        ids.append(key_id(part.encode()))
    return Keys(tuple(fernets), tuple(ids))


def is_secret(name: str) -> bool:
    return name.startswith(SECRET_PREFIX)


def is_sealed(item: Mapping[str, Any]) -> bool:
    return set(item) == {ENVELOPE} and isinstance(item.get(ENVELOPE), Mapping)


def seal_item(item: Mapping[str, Any], keys: Keys) -> dict[str, Any]:
    envelope: dict[str, Any] = {"digest": digest(item)}
    if keys.all:
        token = keys.all[0].encrypt(json.dumps(item, sort_keys=True, default=str).encode())
        envelope.update(format="fernet", key_id=keys.sealing_id, token=token.decode())
    else:
        envelope.update(format="digest-only", why=keys.problem)
    return {ENVELOPE: envelope}


def seal(snapshot: Mapping[str, Any], keys: Keys | None = None) -> dict[str, Any]:
    """A stored form of ``snapshot`` (``{"items": {...}}``) with every Secret item sealed;
    already sealed items are kept (or re-sealed under the first key when it can open them)."""
    keys = keys or load_keys()
    items: dict[str, Any] = {}
    for name, item in dict(snapshot.get("items") or {}).items():
        if not is_secret(name):
            items[name] = item
        elif is_sealed(item):
            items[name] = reseal_item(item, keys)
        else:
            items[name] = seal_item(item, keys)
    return {**dict(snapshot), "items": items}


def reseal_item(item: Mapping[str, Any], keys: Keys) -> dict[str, Any]:
    """Move a sealed item to the first key when another configured key opens it."""
    envelope = item[ENVELOPE]
    if not keys.all or envelope.get("key_id") == keys.sealing_id:
        return dict(item)
    opened, _why = open_item(item, keys)
    return dict(item) if opened is None else seal_item(opened, keys)


def needs_sealing(snapshot: Mapping[str, Any], keys: Keys) -> bool:
    """True when a Secret item is stored in plain form, or sealed under a key other than
    the first one that a configured key can open (rotation)."""
    return seal(snapshot, keys) != dict(snapshot)


def open_item(item: Mapping[str, Any], keys: Keys) -> tuple[dict[str, Any] | None, str | None]:
    """(the Secret as recorded, None) or (None, why it cannot be restored)."""
    if not is_sealed(item):
        return dict(item), None  # recorded before sealing existed; re-sealed by housekeeping
    envelope = item[ENVELOPE]
    if envelope.get("format") != "fernet":
        return None, ("only its digest was kept because no snapshot key was configured when it "
                      f"was recorded ({envelope.get('why') or KEY_ENV + ' is not set'})")
    sealed_with = envelope.get("key_id")
    if not keys.all:
        return None, f"it is encrypted with key {sealed_with}, but {keys.problem}"
    index = keys.ids.index(sealed_with) if sealed_with in keys.ids else None
    candidates = [keys.all[index]] if index is not None else []
    for fernet in candidates:
        try:
            plain = fernet.decrypt(str(envelope.get("token", "")).encode())
            opened = json.loads(plain)
        except (InvalidToken, ValueError):
            return None, (f"its ciphertext does not authenticate with key {sealed_with} (the "
                          "row was altered or the key is not the one it was sealed with)")
        if not isinstance(opened, dict) or digest(opened) != envelope.get("digest"):
            return None, "its content does not match the digest recorded with it"
        return opened, None
    return None, (f"it is encrypted with key {sealed_with}, which is not among the keys in "
                  f"{KEY_ENV} ({', '.join(keys.ids)}); add that key back to restore it")


def recorded_digest(item: Mapping[str, Any]) -> str:
    return str(item[ENVELOPE].get("digest")) if is_sealed(item) else digest(item)
