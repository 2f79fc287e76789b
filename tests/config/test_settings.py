"""Settings come from the environment and refuse what they cannot read: a start with a typo in
a setting stops with a message naming it, instead of running with a value nobody chose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings import env_bool, env_names, env_number, langfuse_project


def settings_of(*names: str, drop: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """Print the settings ``names`` as a process of their own reads them, with ``env`` added to
    this one's environment and ``drop`` left out of it."""
    code = f"import config.settings as s; print(*(getattr(s, name) for name in {names!r}))"
    environment = {name: value for name, value in os.environ.items() if name != drop}
    return subprocess.run(
        [sys.executable, "-c", code], env={**environment, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("TRUE", True), (" on ", True), ("0", False), ("no", False), ("", False)],
)
def test_a_yes_or_no_setting_reads_the_usual_words(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("SOME_FLAG", value)
    assert env_bool("SOME_FLAG", not expected) is expected


def test_an_unknown_yes_or_no_word_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given DEBUG with a typo
    monkeypatch.setenv("DEBUG", "ture")

    # When it is read, then the start stops, naming the setting and its value
    with pytest.raises(ImproperlyConfigured, match="DEBUG='ture' is neither true"):
        env_bool("DEBUG", False)


def test_a_number_setting_that_is_not_a_number_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTRAMP_TICK_SECONDS", "15s")
    with pytest.raises(ImproperlyConfigured, match="PROMPTRAMP_TICK_SECONDS='15s' is not a number"):
        env_number("PROMPTRAMP_TICK_SECONDS", 15.0)
    monkeypatch.setenv("PORT", "80.5")
    with pytest.raises(ImproperlyConfigured, match="PORT='80.5' is not an integer"):
        env_number("PORT", 8000)


def test_a_process_started_with_a_misspelt_debug_stops_with_the_message() -> None:
    result = settings_of("DEBUG", DEBUG="ture")
    assert result.returncode != 0
    assert "DEBUG='ture' is neither true" in result.stderr


def test_langfuse_host_names_the_server_when_langfuse_base_url_is_not_set() -> None:
    result = settings_of(
        "LANGFUSE_BASE_URL", drop="LANGFUSE_BASE_URL", LANGFUSE_HOST="http://langfuse.internal:3000"
    )
    assert result.stdout.strip() == "http://langfuse.internal:3000", result.stderr


def test_the_stream_port_follows_port_unless_set() -> None:
    assert settings_of("PORT", "STREAM_PORT", PORT="9000", STREAM_PORT="").stdout.split() == ["9000", "9001"]
    assert settings_of("STREAM_PORT", PORT="9000", STREAM_PORT="7000").stdout.split() == ["7000"]


def test_gate_servers_are_read_by_name_and_a_bad_one_stops_the_start_without_showing_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given servers and projects by name, one project with its keys in the URL
    monkeypatch.setenv("PROMPTRAMP_PROMETHEUS_SERVERS", "eu=http://prom.eu:9090, us=https://u:p@prom.us")
    monkeypatch.setenv("PROMPTRAMP_LANGFUSE_PROJECTS", "team-b=https://pk-lf-1:sk-lf-2@langfuse.internal/")

    # When they are read, then each name has its server, a project its keys
    assert env_names("PROMPTRAMP_PROMETHEUS_SERVERS") == {
        "eu": "http://prom.eu:9090",
        "us": "https://u:p@prom.us",
    }
    project = langfuse_project("team-b", env_names("PROMPTRAMP_LANGFUSE_PROJECTS")["team-b"])
    assert project == {
        "base_url": "https://langfuse.internal/",
        "public_key": "pk-lf-1",
        "secret_key": "sk-lf-2",
    }

    # And a part that is not name=URL stops the start, naming the part but not its URL
    monkeypatch.setenv("PROMPTRAMP_PROMETHEUS_SERVERS", "eu=http://prom.eu:9090,ftp://x:hunter2@host")
    with pytest.raises(ImproperlyConfigured, match="part 2") as refused:
        env_names("PROMPTRAMP_PROMETHEUS_SERVERS")
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ImproperlyConfigured, match="needs its keys"):
        langfuse_project("team-c", "https://langfuse.internal")


def test_the_langfuse_mirror_without_keys_stops_the_start_naming_what_is_missing() -> None:
    result = settings_of(
        "PROMPTRAMP_LANGFUSE_MIRROR",
        drop="LANGFUSE_SECRET_KEY",
        PROMPTRAMP_LANGFUSE_MIRROR="1",
        LANGFUSE_PUBLIC_KEY="pk-lf-x",
    )
    assert result.returncode != 0
    assert "PROMPTRAMP_LANGFUSE_MIRROR=1 needs LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY" in result.stderr
    with_keys = settings_of(
        "PROMPTRAMP_LANGFUSE_MIRROR",
        PROMPTRAMP_LANGFUSE_MIRROR="1",
        LANGFUSE_PUBLIC_KEY="pk-lf-x",
        LANGFUSE_SECRET_KEY="sk-lf-y",
    )
    assert with_keys.stdout.strip() == "True", with_keys.stderr
