import pytest

from service.settings import SettingsError, load_settings


def test_bad_integer_names_the_variable(tmp_path):
    with pytest.raises(SettingsError, match="QSITE_POOL_MAX_SIZE"):
        load_settings({"QSITE_POOL_MAX_SIZE": "lots", "QSITE_DATA_DIR": str(tmp_path)})


def test_bad_choice_names_the_variable(tmp_path):
    with pytest.raises(SettingsError, match="QSITE_LOG_LEVEL"):
        load_settings({"QSITE_LOG_LEVEL": "LOUD", "QSITE_DATA_DIR": str(tmp_path)})


def test_bad_boolean_names_the_variable(tmp_path):
    with pytest.raises(SettingsError, match="QSITE_RUN_BACKGROUND_JOBS"):
        load_settings({"QSITE_RUN_BACKGROUND_JOBS": "perhaps", "QSITE_DATA_DIR": str(tmp_path)})


def test_production_refuses_to_start_without_secrets(tmp_path):
    with pytest.raises(SettingsError, match="QSITE_JWT_SECRET"):
        load_settings({"QSITE_ENV": "production", "QSITE_DATA_DIR": str(tmp_path)})
    assert not (tmp_path / "dev-secrets.json").exists()


def test_development_generates_stable_secrets(tmp_path):
    first = load_settings({"QSITE_DATA_DIR": str(tmp_path)})
    second = load_settings({"QSITE_DATA_DIR": str(tmp_path)})
    assert first.jwt_secret and first.jwt_secret == second.jwt_secret
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0


def test_values_are_read_from_the_environment(tmp_path):
    settings = load_settings(
        {"DATABASE_URL": "postgresql://x/y", "QSITE_PORT": "9000", "QSITE_CORS_ORIGINS": "https://a, https://b",
         "QSITE_RUN_BACKGROUND_JOBS": "false", "QSITE_DATA_DIR": str(tmp_path)}
    )
    assert settings.database_url == "postgresql://x/y" and settings.port == 9000
    assert settings.cors_origins == ["https://a", "https://b"] and settings.run_background_jobs is False


async def test_demo_seed_is_refused_in_production(settings):
    import msgspec

    from service.api.demo import seed_demo

    with pytest.raises(SettingsError, match="production"):
        await seed_demo(msgspec.structs.replace(settings, env="production"), only_if_empty=False)


def test_values_can_come_from_files(tmp_path):
    secret = tmp_path / "jwt"
    secret.write_text("from-a-file\n")
    settings = load_settings({"QSITE_JWT_SECRET_FILE": str(secret), "QSITE_DATA_DIR": str(tmp_path)})
    assert settings.jwt_secret == "from-a-file"  # the file's trailing newline is not part of it


def test_value_and_file_together_are_refused(tmp_path):
    (tmp_path / "url").write_text("postgresql://a/b")
    with pytest.raises(SettingsError, match="DATABASE_URL and DATABASE_URL_FILE"):
        load_settings({"DATABASE_URL": "postgresql://c/d", "DATABASE_URL_FILE": str(tmp_path / "url")})


def test_unreadable_file_names_the_variable(tmp_path):
    with pytest.raises(SettingsError, match="QSITE_PII_KEYS_FILE: cannot read"):
        load_settings({"QSITE_PII_KEYS_FILE": str(tmp_path / "missing"), "QSITE_DATA_DIR": str(tmp_path)})


def test_trusted_proxies_must_be_networks(tmp_path):
    settings = load_settings({"QSITE_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7", "QSITE_DATA_DIR": str(tmp_path)})
    assert settings.trusted_proxies == ["10.0.0.0/8", "192.168.1.7"]
    with pytest.raises(SettingsError, match="QSITE_TRUSTED_PROXIES"):
        load_settings({"QSITE_TRUSTED_PROXIES": "the-balancer", "QSITE_DATA_DIR": str(tmp_path)})
