"""`inferline`: run the service, manage API keys, apply migrations."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from inferline.core.config import Settings
from inferline.core.errors import ConfigError
from inferline.core.logging import configure_logging
from inferline.service.data_dir_lock import DataDirInUse, hold_data_dir

if TYPE_CHECKING:
    from inferline.api.erasure import Kind
    from inferline.storage.keys import ApiKeys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the service in the foreground (Ctrl-C stops it)")
    run.add_argument(
        "--role",
        choices=["all", "receiver", "processor", "writer"],
        default="all",
        help="all = every stage in this process (embedded unless KAFKA_BOOTSTRAP_SERVERS is set)",
    )

    # Embedded store: chDB has one owner, so these run while the service is stopped; against a
    # running service use the admin API (docs/api.md).
    projects = commands.add_parser("projects", help="projects (run while the embedded service is stopped)")
    project_commands = projects.add_subparsers(dest="projects_command", required=True)
    create_project = project_commands.add_parser("create", help="create a project")
    create_project.add_argument("project")
    create_project.add_argument("--name", default="")
    project_commands.add_parser("list", help="list projects")

    keys = commands.add_parser("keys", help="API keys (run while the embedded service is stopped)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key for a project; prints it once")
    create.add_argument("--project", required=True)
    create.add_argument("--name", default="")
    list_keys = key_commands.add_parser("list", help="list a project's keys (ids, never the keys)")
    list_keys.add_argument("--project", required=True)
    revoke = key_commands.add_parser("revoke", help="revoke a key, given the key or its id")
    revoke.add_argument("key", help="the key (il_…) or its 12-character id from 'keys list'")

    # GDPR: an end user's or a session's data (against a running service: the admin API).
    for kind, flag in (("users", "--user"), ("sessions", "--session")):
        subject = commands.add_parser(
            kind,
            help=f"erase or export one of a project's {kind} (run while the embedded service is stopped)",
        )
        subject_commands = subject.add_subparsers(dest="subject_command", required=True)
        for action, what in (
            ("erase", "delete every row held about it; prints the rows removed per table"),
            ("export", "print every row held about it as JSONL (one object per row, with `table`)"),
        ):
            sub = subject_commands.add_parser(action, help=what)
            sub.add_argument("--project", required=True)
            sub.add_argument(flag, dest="subject", required=True)

    commands.add_parser("migrate", help="apply schema migrations and exit")

    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as e:
        print(f"inferline: invalid configuration\n{e}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        return _run(args, settings)
    except (ConfigError, ValidationError) as e:
        print(f"inferline: invalid configuration: {e}", file=sys.stderr)
        return 2
    except DataDirInUse as e:
        print(f"inferline: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: Settings) -> int:

    if args.command == "run":
        if args.role != "all" or settings.kafka_bootstrap_servers:
            from inferline.service.distributed import run_role

            asyncio.run(run_role(settings, args.role))
        else:
            from inferline.service.embedded import run_embedded

            asyncio.run(run_embedded(settings))
        return 0

    from inferline.storage.clickhouse import connect
    from inferline.storage.retention import apply_configured_retention
    from inferline.storage.schema import migrate

    # The in-process engine opens the data directory's files: not while a service has them.
    local = settings.resolved_clickhouse_url.startswith("chdb:")
    with hold_data_dir(settings.data_dir) if local else contextlib.nullcontext():
        client = connect(settings.resolved_clickhouse_url, settings.clickhouse_database)
        migrate(client, settings.clickhouse_database, settings.retention_days)
        apply_configured_retention(client, settings)
        if args.command in ("keys", "projects"):
            from inferline.storage.keys import ApiKeys

            return _admin(args, ApiKeys(client, settings.clickhouse_database))
        if args.command in ("users", "sessions"):
            return _subject(args, client, settings)
        return 0


def _subject(args: argparse.Namespace, client: Any, settings: Settings) -> int:
    """Erase or export an end user or a session, as the admin API does (same queries)."""
    import orjson

    from inferline.api.deps import Caller, audit
    from inferline.api.erasure import MAX_ID_CHARS, Eraser, count_query, export_lines, subject_digest
    from inferline.api.sql import ReadOnlySql
    from inferline.storage.keys import PROJECT_ID

    kind: Kind = "user" if args.command == "users" else "session"
    if not PROJECT_ID.match(args.project) or not 0 < len(args.subject) <= MAX_ID_CHARS:
        print(f"inferline: invalid project or {kind} id", file=sys.stderr)
        return 1
    who = Caller("", "cli")
    database = settings.clickhouse_database
    details = {"target_project": args.project, "subject_digest": subject_digest(args.subject)}
    if args.subject_command == "erase":
        removed = Eraser(client, database).erase(args.project, kind, args.subject)
        audit(who, f"admin.{kind}s.erase", rows=sum(removed.values()), removed=removed, **details)
        print(orjson.dumps({"removed": removed, "rows_removed": sum(removed.values())}).decode())
        return 0
    sql = ReadOnlySql(settings.resolved_clickhouse_url, database, **settings.sql.model_dump())
    try:
        params = {"project": args.project, "subject": args.subject}
        counts = sql.rows(args.project, count_query(kind), params)[0]
        audit(who, f"admin.{kind}s.export", rows=sum(int(v) for v in counts.values()), **details)
        for chunk in export_lines(sql, args.project, kind, args.subject):
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    finally:
        sql.close()
    return 0


def _admin(args: argparse.Namespace, api_keys: ApiKeys) -> int:
    from inferline.storage.keys import KEY_ID, ProjectExists

    try:
        if args.command == "projects":
            if args.projects_command == "create":
                api_keys.create_project(args.project, args.name)
                print(f"created project {args.project}", file=sys.stderr)
            else:
                for p in api_keys.projects():
                    print(f"{p.project_id}\t{p.created_at:%Y-%m-%dT%H:%M:%SZ}\t{p.name}")
        elif args.keys_command == "create":
            print(api_keys.create(args.project, args.name))
        elif args.keys_command == "list":
            for k in api_keys.keys(args.project):
                state = f"revoked {k.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if k.revoked_at else "active"
                print(f"{k.key_id}\t{k.created_at:%Y-%m-%dT%H:%M:%SZ}\t{state}\t{k.name}")
        else:
            if KEY_ID.match(args.key):
                api_keys.revoke_id(args.key)
            else:
                api_keys.revoke(args.key)
            print("revoked", file=sys.stderr)
    except ProjectExists:
        print(f"inferline: project {args.project} already exists", file=sys.stderr)
        return 1
    except (KeyError, ValueError) as e:
        print(f"inferline: {e.args[0] if e.args else e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
