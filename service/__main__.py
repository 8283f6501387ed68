"""qsite command line: ``python -m service <command>`` (also installed as ``qsite``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import msgspec

from service.settings import Settings, SettingsError, generate_secrets, load_settings

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("qsite.cli")

ROOT = Path(__file__).resolve().parent.parent
OPENAPI_PATH = Path("openapi") / "openapi.json"
GRAPHQL_PATH = Path("graphql") / "schema.graphql"


def resolve_services(settings: Settings) -> Settings:
    """Fill DATABASE_URL / REDIS_URL with embedded servers when they are not configured."""
    from service import embedded

    missing = [name for name, value in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url)) if not value]
    if missing and settings.is_production:
        raise SettingsError(f"{missing[0]} must be set in production (embedded servers are for development)")
    changes: dict[str, str] = {}
    try:
        if not settings.database_url:
            changes["database_url"] = embedded.start_postgres(settings.data_path)
        if not settings.redis_url:
            changes["redis_url"] = embedded.start_redis(settings.data_path)
    except ImportError:
        raise SettingsError(f"{missing[0]} is not set and the embedded servers are not installed (pip install 'qsite[embedded]')") from None
    mode = {
        "postgres": "embedded" if "database_url" in changes else "configured",
        "redis": "embedded" if "redis_url" in changes else "configured",
    }
    log.info(f"services: PostgreSQL {mode['postgres']}, Redis {mode['redis']}", extra={"event": "services"})
    return msgspec.structs.replace(settings, **changes) if changes else settings


def export_schemas(out_dir: Path) -> list[Path]:
    """Write the REST and GraphQL contracts under ``out_dir``; deterministic output."""
    from strawberry.printer import print_schema

    from service.api.graphql import build_schema
    from service.app import create_app

    # Placeholder URLs and throwaway secrets: exporting touches no server and writes no secret file.
    settings = load_settings({}, database_url="postgresql://export", redis_url="redis://export", **generate_secrets())
    app = create_app(settings)
    openapi = json.dumps(app.openapi_schema.to_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    graphql = print_schema(build_schema(settings)) + "\n"
    written = []
    for rel, text in ((OPENAPI_PATH, openapi), (GRAPHQL_PATH, graphql)):
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


async def _migrate(settings: Settings) -> list[str]:
    """Migrate as the migration role; the app role (DATABASE_URL's user, if another) gets its grants."""
    from service.db import migrate

    app_user = urlsplit(settings.database_url or "").username
    app_role = unquote(app_user) if app_user and settings.migration_database_url else None
    return await migrate(settings.migration_database_url or settings.database_url or "", app_role=app_role)


def prepare_database(settings: Settings) -> None:
    """Before serving: development migrates; production only checks (the migration Job or
    `qsite migrate` did it) and refuses pending or edited migrations."""
    from service.db import check_database

    if not settings.is_production:
        asyncio.run(_migrate(settings))
    asyncio.run(check_database(settings.database_url or "", settings))


async def _seed_demo(settings: Settings, *, only_if_empty: bool) -> bool:
    from service.api.demo import seed_demo

    return await seed_demo(settings, only_if_empty=only_if_empty)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from service.app import create_app

    settings = resolve_services(settings)
    prepare_database(settings)
    if args.seed_demo:
        asyncio.run(_seed_demo(settings, only_if_empty=True))
    base = f"http://{settings.host}:{settings.port}"
    print(f"qsite serving on {base}\n  REST docs: {base}/docs\n  GraphQL:   {base}/graphql", flush=True)
    if args.seed_demo:
        from service.api.demo import DEMO_LOGIN_HINT

        print(f"  Demo login: {DEMO_LOGIN_HINT}", flush=True)
    uvicorn.Server(server_config(settings, create_app(settings))).run()


def server_config(settings: Settings, app: Any) -> uvicorn.Config:
    """uvicorn's configuration for ``serve`` (tests start the same server)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        # Kubernetes' terminationGracePeriodSeconds (deploy/) is longer than this drain.
        timeout_graceful_shutdown=settings.shutdown_drain_seconds,
        # Forwarded headers are read by service.proxies, from QSITE_TRUSTED_PROXIES only.
        proxy_headers=False,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        loop="uvloop",
        http="httptools",
    )


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> None:
    applied = asyncio.run(_migrate(resolve_services(settings)))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


def cmd_seed_demo(settings: Settings, args: argparse.Namespace) -> None:
    settings = resolve_services(settings)
    asyncio.run(_migrate(settings))
    seeded = asyncio.run(_seed_demo(settings, only_if_empty=not args.force))
    print("demo data seeded" if seeded else "database already has data; nothing seeded (use --force)")


def cmd_export_schemas(_: Settings, args: argparse.Namespace) -> None:
    for path in export_schemas(Path(args.out)):
        print(f"wrote {path}")


def cmd_create_user(settings: Settings, args: argparse.Namespace) -> None:
    from service.access import cli

    settings = resolve_services(settings)
    prepare_database(settings)
    cli.create_user(settings, args)


def cmd_create_client(settings: Settings, args: argparse.Namespace) -> None:
    from service.access import cli

    settings = resolve_services(settings)
    prepare_database(settings)
    cli.create_client(settings, args)


def cmd_backfill_snapshots(settings: Settings, args: argparse.Namespace) -> None:
    from service.regions import cli

    settings = resolve_services(settings)
    prepare_database(settings)
    print(cli.backfill(settings, args))


def cmd_db_roles(settings: Settings, args: argparse.Namespace) -> None:
    from service import db_roles

    database, statements = db_roles.setup_statements(settings)
    if not args.apply:
        print(";\n".join(statements) + ";")
        return
    if not settings.admin_database_url:
        raise SettingsError("QSITE_ADMIN_DATABASE_URL (or its _FILE) must be set for db-roles --apply")
    asyncio.run(db_roles.apply(settings.admin_database_url, database, statements))
    print(f"roles ready on database {database!r}; now run `qsite migrate`")


def cmd_gen_secrets(_: Settings | None, args: argparse.Namespace) -> None:
    """The env file on stdout; with --dir, one file per variable (compose secrets, *_FILE)."""
    from service.settings import env_file_text, production_env

    env = production_env(database_host=args.database_host, redis_url=args.redis_url, admin=bool(args.dir))
    if not args.dir:
        print(env_file_text(env), end="")
        return
    folder = Path(args.dir)
    existing = [folder / name for name in env if (folder / name).exists()]
    if existing:
        raise SettingsError(f"{existing[0]} exists: secrets are never overwritten (they protect stored data)")
    folder.mkdir(parents=True, exist_ok=True)
    # The folder keeps other users out; the files stay readable so that the container's
    # non-root user can read them through compose's bind mounts.
    folder.chmod(0o700)
    for name, value in env.items():
        path = folder / name
        path.write_text(value + "\n")
        path.chmod(0o644)
    print(f"wrote {len(env)} files to {folder}/")


COMMANDS = {
    "serve": (cmd_serve, "migrate, then serve HTTP (REST under /api/v1, GraphQL at /graphql, docs at /docs)"),
    "migrate": (cmd_migrate, "apply pending db/migrations under an advisory lock (safe to run concurrently)"),
    "seed-demo": (cmd_seed_demo, "load the demo sites, staff, residents and history (only into an empty database)"),
    "db-roles": (cmd_db_roles, "print (or --apply as QSITE_ADMIN_DATABASE_URL) the SQL creating the migration and app roles"),
    "gen-secrets": (cmd_gen_secrets, "print a complete production env file with fresh secrets and role passwords"),
    "export-schemas": (cmd_export_schemas, "write openapi/openapi.json and graphql/schema.graphql from the code"),
    "create-user": (cmd_create_user, "create a staff account (the first command user); the password is read from the terminal"),
    "create-client": (cmd_create_client, "create an integration client (logistics, lab, hospital, tracing, carrier) and print its API key once"),
    "backfill-snapshots": (cmd_backfill_snapshots, "recompute the per-site daily snapshots of past days from the ledgers"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qsite",
        description="qsite: backend of epidemic isolation sites. Configuration comes from the environment "
        "(DATABASE_URL, REDIS_URL, QSITE_*; see README). Without DATABASE_URL/REDIS_URL an embedded "
        "PostgreSQL and Redis are started under QSITE_DATA_DIR (.data).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == "serve":
            p.add_argument("--seed-demo", action="store_true", help="seed demo data first if the database is empty")
        if name == "seed-demo":
            p.add_argument("--force", action="store_true", help="seed even if the database already has sites")
        if name == "db-roles":
            p.add_argument("--apply", action="store_true", help="run the SQL instead of printing it")
        if name == "gen-secrets":
            p.add_argument("--database-host", default="postgres:5432/qsite", help="HOST:PORT/DATABASE of PostgreSQL")
            p.add_argument("--redis-url", default="redis://redis:6379/0", help="REDIS_URL to write")
            p.add_argument("--dir", help="write one file per variable into this folder (compose secrets)")
        if name == "export-schemas":
            p.add_argument("--out", default=str(Path.cwd()), help="folder to write openapi/ and graphql/ into")
        if name == "backfill-snapshots":
            p.add_argument("--days", type=int, default=14, help="how many past days, yesterday included (default 14)")
            p.add_argument("--site", action="append", default=None, help="a site code (repeatable; default every site)")
        if name in ("create-user", "create-client"):
            from service.access import cli

            (cli.add_user_arguments if name == "create-user" else cli.add_client_arguments)(p)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "gen-secrets":  # needs no configuration, and must not write dev secrets
        try:
            cmd_gen_secrets(None, args)
        except SettingsError as exc:
            print(f"qsite: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        return
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"qsite: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    from service.db import MigrationError
    from service.observability import setup_logging

    setup_logging(settings.log_level)
    try:
        COMMANDS[args.command][0](settings, args)
    except (SettingsError, MigrationError) as exc:
        print(f"qsite: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
