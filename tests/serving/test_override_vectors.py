"""The shared override vectors (tests/data/override_vectors.json): a real web server answers
each case's resolve (the fast path, with a Bearer key), and the SDK, fed that server's snapshot,
answers each the same way, locally."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.utils import timezone

from outcomes.models import OutcomeMinute
from outcomes.services import outcome_minutes_flush
from promptramp import Client
from serving.models import Override
from tests.factories import make_key, make_prompt
from tests.servers import base_env, database_url, web_server
from tests.serving.bursts import request
from tests.serving.helpers import put_rollout
from tests.serving.vectors import override_vectors

CHECK_INTERVAL = 0.5


def _setup(owner: Any, name: str, case: dict[str, Any]) -> tuple[dict[str, int], int | None]:
    """The case's prompt, rollout and overrides, as rows (expired ones too, which no API adds);
    returns the overrides' ids by ref and the rollout's id."""
    prompt = make_prompt(owner, name=name, versions=3)
    rollout_id = None
    if case["rollout"]:
        shape = case["rollout"]
        rollout_id = put_rollout(
            prompt,
            baseline=shape["baseline"],
            candidate=shape["candidate"],
            percent=Decimal(shape["percent"]),
            state=shape["state"],
        ).pk
    ids = {}
    now = timezone.now()
    for override in case["overrides"]:
        match = override["match"]
        expires_in = override.get("expires_in")
        made = Override.objects.create(
            prompt=prompt,
            unit=match.get("unit", ""),
            attribute=match.get("attribute", ""),
            value=match.get("value", ""),
            version=prompt.versions.get(version=override["version"]) if "version" in override else None,
            arm=override.get("arm", ""),
            expires_at=None if expires_in is None else now + timedelta(seconds=expires_in),
        )
        ids[override["ref"]] = made.pk
    return ids, rollout_id


def _expected(case: dict[str, Any], ids: dict[str, int], rollout_id: int | None) -> dict[str, Any]:
    expected = case["expected"]
    return {
        "version": expected["version"],
        "arm": expected["arm"],
        "override_id": ids[expected["override"]] if expected["override"] else None,
        "rollout_id": rollout_id if expected["rollout"] else None,
    }


@pytest.mark.django_db(transaction=True)
def test_server_and_sdk_give_every_override_vector(alice, tmp_path):
    cases = override_vectors()
    assert len(cases) >= 20
    expectations = {}
    for number, case in enumerate(cases):
        name = f"vector.case{number}"
        ids, rollout_id = _setup(alice, name, case)
        expectations[name] = _expected(case, ids, rollout_id)
    key = make_key(alice, "read,ingest")
    env = base_env(DATABASE_URL=database_url(connection.settings_dict))
    with web_server(env, tmp_path / "web.log") as url:
        time.sleep(CHECK_INTERVAL + 0.1)  # rows written behind the services' back: the next check
        sdk = Client(url, key, stream=False, initial_timeout=5)
        try:
            for number, case in enumerate(cases):
                name = f"vector.case{number}"
                query = {f"attr.{attribute}": value for attribute, value in case["attributes"].items()}
                if case["unit"]:
                    query["unit"] = case["unit"]
                reply = request(url, "GET", f"/api/v1/prompts/{name}/resolve?{urlencode(query)}", key=key)
                assert reply.status == 200, (case["name"], reply.body)
                served = {field: reply.body.get(field) for field in expectations[name]}
                assert served == expectations[name], case["name"]
                assert reply.body["bucket"] is None or case["expected"]["arm"] != "override"

                local = sdk.get(name, unit=case["unit"], attributes=case["attributes"]).as_dict()
                assert {field: local.get(field) for field in expectations[name]} == expectations[name], case[
                    "name"
                ]
                assert local == reply.body, case["name"]  # and field for field
                sdk.report(sdk.get(name, unit=case["unit"], attributes=case["attributes"]), latency_ms=5.0)
        finally:
            sdk.close()  # sends what was reported
    # What the SDK reported of each answer is accepted and counted under its arm.
    outcome_minutes_flush()
    samples: Counter[str] = Counter()
    for arm, count in OutcomeMinute.objects.values_list("arm", "samples"):
        samples[arm] += count
    assert samples == Counter(case["expected"]["arm"] for case in cases)
