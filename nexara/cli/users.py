"""``nexara users add NAME --role viewer|operator|admin`` and ``nexara users list``: the console's users
file (``serve.console.users_file``, or ``--file``). The password comes from ``$NEXARA_USER_PASSWORD`` or
a prompt (asked twice), never from the command line."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from nexara.cli.config import load_cfg

PASSWORD_ENV = "NEXARA_USER_PASSWORD"


def _users_file(args: argparse.Namespace) -> str:
    return str(args.file) if args.file else load_cfg(args).serve.console.users_file


def cmd_users_add(args: argparse.Namespace) -> int:
    from nexara.users import add_user

    path = _users_file(args)
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            sys.stderr.write(f"nexara: error: no terminal to ask for the password: set {PASSWORD_ENV}\n")
            return 2
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            sys.stderr.write("nexara: error: the passwords differ\n")
            return 2
    user = add_user(path, args.name, args.role, password, replace=args.replace)
    sys.stdout.write(f"user {user.name} ({user.role}) saved in {path}\n")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from nexara.users import load_users

    for user in load_users(_users_file(args)).values():
        sys.stdout.write(f"{user.name}\t{user.role}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    u = sub.add_parser("users", help="console users (sign-in names, roles, hashed passwords)")
    usub = u.add_subparsers(dest="users_command", required=True)
    add = usub.add_parser("add", help=f"add a user (password from ${PASSWORD_ENV} or a prompt)")
    add.add_argument("name")
    add.add_argument("--role", choices=["viewer", "operator", "admin"], required=True)
    add.add_argument("--replace", action="store_true", help="change an existing user's password and role")
    add.add_argument("--file", help="users file (default: serve.console.users_file)")
    add.set_defaults(func=cmd_users_add)
    ls = usub.add_parser("list", help="user names and roles")
    ls.add_argument("--file", help="users file (default: serve.console.users_file)")
    ls.set_defaults(func=cmd_users_list)
