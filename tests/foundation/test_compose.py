"""docker-compose.yml: production mode, every secret from a file that `gen-secrets --dir` writes."""

import pytest
import yaml

from service.__main__ import build_parser, cmd_db_roles, main
from service.settings import SECRET_FIELDS, Settings, SettingsError, env_name, load_settings
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_secrets_come_from_the_files_gen_secrets_writes(tmp_path, capsys):
    main(["gen-secrets", "--dir", str(tmp_path / "secrets")])
    written = {p.name for p in (tmp_path / "secrets").iterdir()}
    declared = COMPOSE["secrets"]
    assert {name: spec["file"] for name, spec in declared.items()} == {n: f"./secrets/{n}" for n in declared}
    assert set(declared) <= written
    for name, service in COMPOSE["services"].items():
        environment = service.get("environment", {})
        for variable, value in environment.items():
            if variable.endswith("_FILE"):
                secret = value.removeprefix("/run/secrets/")
                assert secret in service["secrets"] and secret in declared, (name, variable)
        assert not any(v in environment for v in ("POSTGRES_PASSWORD", *map(env_name, SECRET_FIELDS))), name


def test_app_runs_in_production_without_owner_or_admin_credentials():
    app = COMPOSE["services"]["app"]
    environment = app["environment"]
    assert environment["QSITE_ENV"] == "production" and "command" not in app  # the image's `serve`, no demo data
    for field in ("database_url", "redis_url", *SECRET_FIELDS):
        assert f"{env_name(field)}_FILE" in environment
    assert not {"QSITE_MIGRATION_DATABASE_URL", "QSITE_ADMIN_DATABASE_URL"} & set(app["secrets"])
    assert app["read_only"] and app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    grace = int(app["stop_grace_period"].rstrip("s"))
    assert grace > Settings().shutdown_drain_seconds
    # Only PostgreSQL's data is kept; Redis is an accelerator with nothing to persist.
    assert [v.split(":")[0] for s in COMPOSE["services"].values() for v in s.get("volumes", [])] == ["pgdata"]


def test_gen_secrets_prints_a_complete_production_env_file(tmp_path, capsys):
    main(["gen-secrets", "--database-host", "db.internal:5432/qsite"])
    text = capsys.readouterr().out
    env = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    settings = load_settings({**env, "QSITE_DATA_DIR": str(tmp_path)})  # production: refuses anything missing
    assert settings.is_production and settings.database_url.startswith("postgresql://qsite_app:")
    assert settings.migration_database_url.endswith("@db.internal:5432/qsite")
    assert not (tmp_path / "dev-secrets.json").exists()
    main(["gen-secrets"])
    assert capsys.readouterr().out != text  # fresh secrets every time


def test_gen_secrets_never_overwrites(tmp_path, capsys):
    main(["gen-secrets", "--dir", str(tmp_path / "s")])
    before = (tmp_path / "s" / "QSITE_PII_KEYS").read_text()
    with pytest.raises(SystemExit):
        main(["gen-secrets", "--dir", str(tmp_path / "s")])
    assert (tmp_path / "s" / "QSITE_PII_KEYS").read_text() == before
    assert "secrets are never overwritten" in capsys.readouterr().err


def test_db_roles_prints_sql_for_the_roles_in_the_two_urls(tmp_path, capsys):
    env = {"QSITE_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://qsite_app:it%27s@db/qsite",
           "QSITE_MIGRATION_DATABASE_URL": "postgresql://qsite_owner:pw@db/qsite"}
    cmd_db_roles(load_settings(env), build_parser().parse_args(["db-roles"]))
    sql = capsys.readouterr().out
    assert 'ALTER ROLE "qsite_app" LOGIN NOSUPERUSER' in sql and "PASSWORD 'it''s'" in sql  # quoted, not injected
    assert 'ALTER DATABASE "qsite" OWNER TO "qsite_owner"' in sql
    same_role = load_settings({**env, "QSITE_MIGRATION_DATABASE_URL": "postgresql://qsite_app:pw@db/qsite"})
    with pytest.raises(SettingsError, match="two different roles"):
        cmd_db_roles(same_role, build_parser().parse_args(["db-roles"]))
