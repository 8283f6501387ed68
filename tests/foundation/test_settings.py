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
