"""Console users: a JSON users file of names, roles and salted scrypt password hashes.

The file (``serve.console.users_file``) maps each user name to ``{"role", "password"}`` where the
password is ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``: hashlib's scrypt (memory-hard, in the standard
library) with a 16-byte random salt per user. It is written atomically with mode 600 by
``nexara users add`` and read by the HTTP ingress at each sign-in, so a user added while the app runs
can sign in at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nexara.errors import InvalidInputError

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
"""Roles from least to most: viewer reads, operator also reviews, admin also manages cameras and users."""

USER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
MIN_PASSWORD_CHARS = 8

# scrypt cost: n=2**14, r=8 takes ~16 MiB and tens of milliseconds: cheap for one sign-in, costly per guess
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_DUMMY_HASH: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    password_hash: str


def role_at_least(role: str, needed: Role) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)  # type: ignore[arg-type]


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=64 * 1024 * 1024
    )
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded`` (constant-time compare; a malformed hash never matches)."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
        digest = hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p), maxmem=64 * 1024 * 1024
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def load_users(path: str | os.PathLike[str]) -> dict[str, User]:
    """The users in ``path`` (none when the file does not exist); a malformed file is an error naming it."""
    p = Path(path).expanduser()
    if not p.exists():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"users file {p} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("users", {}), dict):
        raise InvalidInputError(f'users file {p}: expected {{"users": {{NAME: {{"role", "password"}}}}}}')
    out: dict[str, User] = {}
    for name, entry in data.get("users", {}).items():
        if not isinstance(entry, dict) or entry.get("role") not in ROLES or not isinstance(entry.get("password"), str):
            raise InvalidInputError(f"users file {p}: user {name!r} needs a role ({', '.join(ROLES)}) and a password")
        out[name] = User(name, entry["role"], entry["password"])
    return out


def add_user(path: str | os.PathLike[str], name: str, role: str, password: str, *, replace: bool = False) -> User:
    """Add (or with ``replace`` update) a user; the file is rewritten atomically, mode 600."""
    if not re.match(USER_NAME_PATTERN, name):
        raise InvalidInputError(
            f"user name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-', starting alphanumeric"
        )
    if role not in ROLES:
        raise InvalidInputError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInputError(f"password too short: at least {MIN_PASSWORD_CHARS} characters")
    p = Path(path).expanduser()
    users = load_users(p)
    if name in users and not replace:
        raise InvalidInputError(f"user {name} already exists in {p} (use --replace to change the password or role)")
    user = User(name, role, hash_password(password))  # type: ignore[arg-type]
    users[name] = user
    body = {"users": {u.name: {"role": u.role, "password": u.password_hash} for u in users.values()}}
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(body, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
    return user


def authenticate(path: str | os.PathLike[str], name: str, password: str) -> User | None:
    """The user when name and password match, else None. An unknown name costs one hash too, so the
    answer time does not tell which names exist."""
    global _DUMMY_HASH
    user = load_users(path).get(name)
    if user is None:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hash_password(secrets.token_urlsafe(12))
        verify_password(password, _DUMMY_HASH)
        return None
    return user if verify_password(password, user.password_hash) else None
