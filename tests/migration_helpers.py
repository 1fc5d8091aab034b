"""A store as an older release left it: the migrations before a version applied and recorded, as
`migrate` records them, so that `migrate` then applies only the newer ones."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from inferline.storage.schema import migrations


def migrate_before(client: Client, version: int, database: str = "default") -> None:
    client.command(
        f"CREATE TABLE IF NOT EXISTS `{database}`.schema_migrations (version UInt32, description String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    for m in migrations(database, 180):
        if m.version >= version:
            break
        for statement in m.statements:
            client.command(statement)
        client.insert(
            f"`{database}`.schema_migrations", [[m.version, m.description]], ["version", "description"]
        )
