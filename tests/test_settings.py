"""Settings come from IDBRIDGE_* variables; a bad value stops the start, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings, SettingsError, documented_settings, ensure_secret_key_file

KEY = "k" * 32


def load(tmp_path, **environ):
    return Settings.load(environ={"IDBRIDGE_INSTANCE_PATH": str(tmp_path), **environ})


def test_defaults_are_a_sqlite_file_in_the_instance_folder(tmp_path):
    settings = load(tmp_path, IDBRIDGE_SECRET_KEY=KEY)
    assert settings.database_url == f"sqlite:///{tmp_path / 'idbridge.db'}"
    assert settings.redis_url == ""
    assert settings.allow_private_urls is False
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.session_max_age == 86400


def test_values_are_parsed_and_normalised(tmp_path):
    settings = load(
        tmp_path,
        IDBRIDGE_SECRET_KEY=KEY,
        IDBRIDGE_DATABASE_URL="postgresql://u@db:5432/idb",
        IDBRIDGE_ALLOW_PRIVATE_URLS="yes",
        IDBRIDGE_PUBLIC_URL="https://id.example.com/",
        IDBRIDGE_DB_POOL_SIZE="7",
        IDBRIDGE_LOG_LEVEL="warning",
        IDBRIDGE_SESSION_MAX_AGE="36000",
    )
    assert settings.database_url == "postgresql+psycopg://u@db:5432/idb"
    assert settings.allow_private_urls is True
    assert settings.public_url == "https://id.example.com"
    assert settings.db_pool_size == 7
    assert settings.log_level == "WARNING"
    assert settings.session_max_age == 36000


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IDBRIDGE_DATABASE_URL", "mysql://x"),
        ("IDBRIDGE_REDIS_URL", "http://cache"),
        ("IDBRIDGE_SECRET_KEY", "short"),
        ("IDBRIDGE_ADMIN_TOKEN", "short"),
        ("IDBRIDGE_PUBLIC_URL", "idbridge.example.com"),
        ("IDBRIDGE_SMTP_URL", "mail.example.com:25"),
        ("IDBRIDGE_ALLOW_PRIVATE_URLS", "maybe"),
        ("IDBRIDGE_LOG_LEVEL", "LOUD"),
        ("IDBRIDGE_DB_POOL_SIZE", "many"),
        ("IDBRIDGE_DB_TIMEOUT", "-1"),
        ("IDBRIDGE_SESSION_MAX_AGE", "60"),
        ("IDBRIDGE_SESSION_MAX_AGE", "1 day"),
        ("IDBRIDGE_SESSION_MAX_AGE", str(100 * 86400)),
    ],
)
def test_a_bad_value_is_named(tmp_path, variable, value):
    environ = {"IDBRIDGE_SECRET_KEY": KEY, variable: value}
    with pytest.raises(SettingsError, match=variable):
        load(tmp_path, **environ)


def test_a_missing_secret_key_says_how_to_make_one(tmp_path):
    with pytest.raises(SettingsError, match="IDBRIDGE_SECRET_KEY is not set"):
        load(tmp_path)


def test_the_instance_secret_key_file_is_used_and_private(tmp_path):
    ensure_secret_key_file(tmp_path)
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"
    first = load(tmp_path).secret_key
    ensure_secret_key_file(tmp_path)  # never overwritten
    assert load(tmp_path).secret_key == first and len(first) >= 32


def test_repr_never_shows_secrets(tmp_path):
    settings = load(tmp_path, IDBRIDGE_SECRET_KEY=KEY, IDBRIDGE_ADMIN_TOKEN="a" * 40)
    assert KEY not in repr(settings) and "a" * 40 not in repr(settings)


def test_every_setting_is_documented_in_the_readme():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for variable, _default, doc in documented_settings():
        assert doc
        assert f"`{variable}`" in readme, f"{variable} is missing from the README"


def test_the_command_line_refuses_to_start_with_a_bad_value(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IDBRIDGE_")}
    environ |= {
        "IDBRIDGE_SECRET_KEY": KEY,
        "IDBRIDGE_DB_POOL_SIZE": "lots",
        "IDBRIDGE_INSTANCE_PATH": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", "1"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "IDBRIDGE_DB_POOL_SIZE must be a number" in done.stderr
    assert "Traceback" not in done.stderr
