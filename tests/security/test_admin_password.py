"""The run command never prints the admin's password and never resets one changed in the admin;
a generated one is kept in a file only its owner reads."""

from __future__ import annotations

import stat

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from tests.servers import running


@pytest.mark.django_db
def test_a_generated_password_is_kept_in_a_private_file_and_a_changed_one_survives(tmp_path, settings):
    settings.PROMPTRAMP_ADMIN_PASSWORD = ""
    password_file = tmp_path / "admin_password"

    call_command("ensure_admin", "--password-file", str(password_file))
    admin = User.objects.get(username="admin")
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert admin.is_superuser and admin.check_password(password_file.read_text().strip())

    admin.set_password("changed in the admin")
    admin.save()
    call_command("ensure_admin", "--password-file", str(password_file))  # the next `make run`

    assert User.objects.get(username="admin").check_password("changed in the admin")


@pytest.mark.django_db
def test_a_password_from_the_environment_is_set(tmp_path, settings):
    settings.PROMPTRAMP_ADMIN_PASSWORD = "from-the-environment"  # as settings read it
    User.objects.create_user("admin", password="older")

    call_command("ensure_admin", "--password-file", str(tmp_path / "admin_password"))

    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("from-the-environment")
    assert not (tmp_path / "admin_password").exists()


@pytest.mark.django_db(transaction=True)
def test_the_run_command_prints_where_the_password_is_kept_not_the_password(run_env, tmp_path):
    env = run_env("run")
    del env["PROMPTRAMP_ADMIN_PASSWORD"]
    env["PROMPTRAMP_ADMIN_USER"] = "printed-admin"
    log = tmp_path / "run.log"

    with running(env, log):
        pass

    password_file = tmp_path / "run" / "admin_password"
    printed = log.read_text()
    assert f"password in {password_file}" in printed
    assert password_file.read_text().strip() not in printed
