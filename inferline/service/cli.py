"""`inferline`: run the service, manage API keys, apply migrations."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from pydantic import ValidationError

from inferline.core.config import Settings
from inferline.core.errors import ConfigError
from inferline.core.logging import configure_logging

if TYPE_CHECKING:
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

    client = connect(settings.resolved_clickhouse_url, settings.clickhouse_database)
    migrate(client, settings.clickhouse_database, settings.retention_days)
    apply_configured_retention(client, settings)
    if args.command in ("keys", "projects"):
        from inferline.storage.keys import ApiKeys

        return _admin(args, ApiKeys(client, settings.clickhouse_database))
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
