"""Login throttling from the attacker's side: after PROMPTRAMP_LOGIN_FAILURES failed admin logins
for one user name from one address, the next attempt is refused (429) even with the right
password, until 15 minutes after the first failure; another address is not locked out."""

from __future__ import annotations

import pytest

from tests.factories import UserFactory

LOGIN = "/admin/login/"


def _login(client, username: str, password: str, address: str):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.django_db
def test_the_eleventh_attempt_is_refused_even_with_the_right_password(client, settings):
    settings.PROMPTRAMP_LOGIN_FAILURES = 10
    user = UserFactory(username="guessed-admin")
    user.set_password("the-right-password")
    user.save()

    failures = [_login(client, "guessed-admin", f"guess-{n}", "198.51.100.7") for n in range(10)]
    eleventh = _login(client, "guessed-admin", "the-right-password", "198.51.100.7")

    assert [answer.status_code for answer in failures] == [200] * 10  # the form again
    assert eleventh.status_code == 429
    assert eleventh.json()["error"]["code"] == "rate_limited"
    assert 14 * 60 < int(eleventh["Retry-After"]) <= 15 * 60
    assert client.get("/admin/").status_code == 302  # not logged in
    # the owner, from elsewhere, still logs in
    assert _login(client, "guessed-admin", "the-right-password", "192.0.2.44").status_code == 302


@pytest.mark.django_db
def test_failures_below_the_limit_do_not_stop_the_right_password(client, settings):
    settings.PROMPTRAMP_LOGIN_FAILURES = 10
    user = UserFactory(username="careless-admin")
    user.set_password("the-right-password")
    user.save()

    for n in range(9):
        _login(client, "careless-admin", f"typo-{n}", "198.51.100.8")

    assert _login(client, "careless-admin", "the-right-password", "198.51.100.8").status_code == 302
