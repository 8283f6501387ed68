"""The two PostgreSQL roles of a production database, and the SQL that creates them.

- the migration role owns the database's schema and everything in it; ``qsite migrate``
  (the Kubernetes migration Job, compose's ``migrate`` service) connects as it
  (``QSITE_MIGRATION_DATABASE_URL``) and, after migrating, grants the app role its access;
- the app role (``DATABASE_URL``) owns nothing, so it can run no DDL and cannot disable the
  audit trigger; it may read and write data, and only SELECT/INSERT the audit log.

Both are plain roles (no superuser, CREATEDB, CREATEROLE or BYPASSRLS). Names and passwords
come from the two URLs, so the env file that configures qsite is the only place they live.
``qsite db-roles`` prints this SQL (for psql as an administrator) or applies it with
``--admin-url``; it is idempotent and also hands tables made by an earlier owner (a database
set up before these roles) to the migration role.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from service.settings import Settings, SettingsError


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _role(name: str, password: str | None) -> list[str]:
    return [
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(name)}) "
        f"THEN CREATE ROLE {_ident(name)}; END IF; END $$",
        f"ALTER ROLE {_ident(name)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"
        + (f" PASSWORD {_literal(password)}" if password else ""),
    ]


def role_setup_sql(database: str, migrator: str, migrator_password: str | None, app: str, app_password: str | None) -> list[str]:
    """Statements to run as an administrator, connected to ``database``."""
    db, owner, user = _ident(database), _ident(migrator), _ident(app)
    return [
        *_role(migrator, migrator_password),
        *_role(app, app_password),
        f"ALTER DATABASE {db} OWNER TO {owner}",
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
        f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {user}",
        f"ALTER SCHEMA public OWNER TO {owner}",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {user}",
        # Tables, sequences and functions an earlier owner created move to the migration role.
        f"""DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
           WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
             AND pg_get_userbyid(c.relowner) <> {_literal(migrator)}
             AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
  LOOP EXECUTE format('ALTER %s %s OWNER TO %I',
         CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
         r.name, {_literal(migrator)});
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p
           WHERE p.pronamespace = 'public'::regnamespace AND pg_get_userbyid(p.proowner) <> {_literal(migrator)}
  LOOP EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.name, {_literal(migrator)}); END LOOP;
END $$""",
    ]


def _user_and_password(url: str | None, variable: str) -> tuple[str, str | None, str]:
    parts = urlsplit(url or "")
    if not parts.username:
        raise SettingsError(f"{variable} must name its user (postgresql://USER:PASSWORD@HOST/DB)")
    return unquote(parts.username), unquote(parts.password) if parts.password else None, parts.path.lstrip("/")


def setup_statements(settings: Settings) -> tuple[str, list[str]]:
    """The database and the role SQL for the roles named in QSITE_MIGRATION_DATABASE_URL and DATABASE_URL."""
    migrator, migrator_password, database = _user_and_password(settings.migration_database_url, "QSITE_MIGRATION_DATABASE_URL")
    app, app_password, app_database = _user_and_password(settings.database_url, "DATABASE_URL")
    if migrator == app:
        raise SettingsError("QSITE_MIGRATION_DATABASE_URL and DATABASE_URL must name two different roles")
    if database != app_database:
        raise SettingsError("QSITE_MIGRATION_DATABASE_URL and DATABASE_URL must name the same database")
    return database, role_setup_sql(database, migrator, migrator_password, app, app_password)


async def apply(admin_url: str, database: str, statements: list[str]) -> None:
    """Run the statements as an administrator, connected to the application's database."""
    conn = await asyncpg.connect(urlunsplit(urlsplit(admin_url)._replace(path=f"/{database}")))
    try:
        async with conn.transaction():
            for statement in statements:
                await conn.execute(statement)
    finally:
        await conn.close()
