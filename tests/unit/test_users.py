"""Console users: salted scrypt hashes in a mode-600 users file, `nexara users add/list`, sessions,
CSRF tokens and the sign-in failure throttle."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nexara.errors import InvalidInputError
from nexara.users import add_user, authenticate, hash_password, load_users, role_at_least, verify_password
from serve.console.sessions import LoginThrottle, SessionSigner, load_secret

REPO = Path(__file__).resolve().parents[2]


def test_hash_is_salted_scrypt_and_verifies_only_the_right_password() -> None:
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a.startswith("scrypt$") and a != b  # a fresh salt per hash
    assert verify_password("correct horse", a) and verify_password("correct horse", b)
    assert not verify_password("correct hors", a)
    assert not verify_password("x", "garbage") and not verify_password("x", "scrypt$1$2$3$!!$!!")


def test_users_file_is_private_and_holds_no_plain_password(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "users.json"
    add_user(path, "ada", "admin", "admin-pass-1")
    add_user(path, "oli", "operator", "operator-pass-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "admin-pass-1" not in text and "operator-pass-1" not in text
    users = load_users(path)
    assert {u.name: u.role for u in users.values()} == {"ada": "admin", "oli": "operator"}
    assert authenticate(path, "ada", "admin-pass-1") is not None
    assert authenticate(path, "ada", "operator-pass-1") is None
    assert authenticate(path, "nobody", "admin-pass-1") is None


def test_bad_users_and_files_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    add_user(path, "ada", "admin", "admin-pass-1")
    with pytest.raises(InvalidInputError, match="already exists"):
        add_user(path, "ada", "viewer", "another-pass")
    add_user(path, "ada", "viewer", "another-pass", replace=True)
    assert load_users(path)["ada"].role == "viewer"
    with pytest.raises(InvalidInputError, match="role 'root'"):
        add_user(path, "bob", "root", "long-enough")
    with pytest.raises(InvalidInputError, match="too short"):
        add_user(path, "bob", "viewer", "short")
    with pytest.raises(InvalidInputError, match="user name"):
        add_user(path, "../bob", "viewer", "long-enough")
    path.write_text(json.dumps({"users": {"eve": {"role": "god", "password": "x"}}}))
    with pytest.raises(InvalidInputError, match="eve"):
        load_users(path)
    path.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not readable JSON"):
        load_users(path)


def test_roles_are_ordered() -> None:
    assert role_at_least("admin", "operator") and role_at_least("operator", "operator")
    assert not role_at_least("viewer", "operator") and not role_at_least("root", "viewer")


def test_cli_adds_a_user_with_the_password_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    run = [sys.executable, "-m", "nexara.cli", "users"]
    env = {"NEXARA_USER_PASSWORD": "operator-pass-1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        [*run, "add", "oli", "--role", "operator", "--file", str(path)],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    assert "operator-pass-1" not in r.stdout + r.stderr
    r = subprocess.run([*run, "list", "--file", str(path)], capture_output=True, text=True, cwd=REPO)
    assert r.stdout.split() == ["oli", "operator"]
    # no password in the environment and no terminal: a clear error, nothing written
    r = subprocess.run(
        [*run, "add", "vic", "--role", "viewer", "--file", str(path)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
    )
    assert r.returncode == 2 and "NEXARA_USER_PASSWORD" in r.stderr
    r = subprocess.run(
        [*run, "add", "vic", "--role", "boss", "--file", str(path)], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert r.returncode == 2 and "invalid choice" in r.stderr
    assert list(load_users(path)) == ["oli"]


def test_session_cookies_are_signed_expire_and_carry_a_csrf_token(tmp_path: Path) -> None:
    secret = load_secret(tmp_path)
    assert load_secret(tmp_path) == secret and stat.S_IMODE((tmp_path / "console_secret").stat().st_mode) == 0o600
    signer = SessionSigner(secret, ttl_s=60)
    cookie, session = signer.issue("oli", now_s=1000.0)
    assert signer.verify(cookie, now_s=1030.0) == session
    assert signer.verify(cookie, now_s=1061.0) is None  # expired
    _payload, mac = cookie.split(".")
    forged, _ = SessionSigner(b"x" * 32, 60).issue("ada", now_s=1000.0)
    assert signer.verify(forged.split(".")[0] + "." + mac, now_s=1001.0) is None
    assert signer.verify("garbage", now_s=1001.0) is None and signer.verify(None) is None
    token = signer.csrf_token(session)
    assert signer.check_csrf(session, token) and not signer.check_csrf(
        session, token[:-1] + ("B" if token.endswith("A") else "A")
    )
    assert not signer.check_csrf(session, None)
    _other_cookie, other = signer.issue("oli", now_s=1000.0)
    assert signer.csrf_token(other) != token  # per session


def test_throttle_counts_failures_per_name_and_per_client_over_a_window() -> None:
    t = LoginThrottle(max_failures=3, window_s=10, client_factor=2)
    for i in range(3):
        assert t.retry_after_s("vic", "1.2.3.4", now_s=float(i)) == 0
        t.failed("Vic", "1.2.3.4", now_s=float(i))
    assert t.retry_after_s("vic", "5.6.7.8", now_s=3.0) == pytest.approx(7.0)  # the name, from anywhere
    assert t.retry_after_s("ada", "1.2.3.4", now_s=3.0) == 0  # another name from the same client: 3 < 6
    for i in range(3):
        t.failed(f"guess{i}", "1.2.3.4", now_s=4.0)
    assert t.retry_after_s("ada", "1.2.3.4", now_s=4.0) > 0  # the client's limit (6)
    assert t.retry_after_s("ada", "9.9.9.9", now_s=4.0) == 0
    assert t.retry_after_s("vic", "9.9.9.9", now_s=10.5) == 0  # vic's first failure left the window
    t.succeeded("VIC")
    assert t.retry_after_s("vic", "9.9.9.9", now_s=3.0) == 0
