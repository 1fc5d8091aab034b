"""`inferline`: run the service, manage API keys, apply migrations."""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.logging import configure_logging


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

    keys = commands.add_parser("keys", help="API keys (run while the embedded service is stopped)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key for a project; prints it once")
    create.add_argument("--project", required=True)
    create.add_argument("--name", default="")
    revoke = key_commands.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key")

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
            from pipeline.distributed import run_role

            asyncio.run(run_role(settings, args.role))
        else:
            from pipeline.service import run_embedded

            asyncio.run(run_embedded(settings))
        return 0

    from storage.clickhouse import connect
    from storage.retention import apply_configured_retention
    from storage.schema import migrate

    client = connect(settings.resolved_clickhouse_url, settings.clickhouse_database)
    migrate(client, settings.clickhouse_database, settings.retention_days)
    apply_configured_retention(client, settings)
    if args.command == "keys":
        from ingest.auth import ApiKeys

        api_keys = ApiKeys(client, settings.clickhouse_database)
        if args.keys_command == "create":
            print(api_keys.create(args.project, args.name))
        else:
            api_keys.revoke(args.key)
            print("revoked", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
