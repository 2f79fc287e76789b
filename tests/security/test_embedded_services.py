"""The embedded PostgreSQL and Redis ask for passwords: another local user, or anything else that
reaches their ports, gets nothing without the files under the data folder, which only their
owner may read."""

from __future__ import annotations

import stat

import psutil
import psycopg
import pytest
import redis

from devstack import embedded_services


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_postgres_refuses_a_connection_without_the_password(services_root):
    url = embedded_services.ensure_running(services_root, services=["postgres"]).urls["DATABASE_URL"]
    port = _port(url)

    for attempt in ("postgres@", "postgres:guess@"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"postgresql://{attempt}127.0.0.1:{port}/promptramp", connect_timeout=5)
    with psycopg.connect(url, connect_timeout=5) as connection:  # the URL the service uses
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_redis_refuses_every_command_without_the_password(services_root):
    url = embedded_services.ensure_running(services_root, services=["redis"]).urls["REDIS_URL"]

    attacker = redis.Redis(host="127.0.0.1", port=_port(url), socket_timeout=5)
    with pytest.raises(redis.exceptions.AuthenticationError):
        attacker.keys("*")
    assert redis.Redis.from_url(url, socket_timeout=5).ping()


def test_the_passwords_are_in_files_only_their_owner_reads_and_not_on_a_command_line(services_root):
    urls = embedded_services.ensure_running(services_root, services=["postgres", "redis"]).urls

    for name in ("postgres_password", "redis_password", "services.json", "redis/redis.conf"):
        mode = stat.S_IMODE((services_root / name).stat().st_mode)
        assert mode == 0o600, f"{name}: {oct(mode)}"
    passwords = [
        (services_root / name).read_text().strip() for name in ("postgres_password", "redis_password")
    ]
    assert all(f":{password}@" in " ".join(urls.values()) for password in passwords)
    command_lines = [" ".join(process.info["cmdline"] or []) for process in psutil.process_iter(["cmdline"])]
    assert not [line for line in command_lines for password in passwords if password in line]


def test_a_data_folder_that_trusted_local_users_gets_a_password(services_root):
    """A data folder made by the first release (initdb -A trust) is made to ask for one."""
    embedded_services.ensure_running(services_root, services=["postgres"])
    embedded_services.stop(["postgres"], services_root)
    hba = services_root / "postgres" / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("scram-sha-256", "trust"))
    (services_root / "postgres_password").unlink()

    url = embedded_services.ensure_running(services_root, services=["postgres"]).urls["DATABASE_URL"]

    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{_port(url)}/promptramp", connect_timeout=5)
    with psycopg.connect(url, connect_timeout=5) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
