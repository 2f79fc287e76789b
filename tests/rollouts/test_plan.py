"""Plans and gates: their JSON, the defaults, and every refusal naming its field."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollouts.plan import DEFAULT_GATES, DEFAULT_PLAN, ConfigError, Gate, Plan, Step, parse_gates


def test_default_plan_and_gates_are_the_specs():
    assert DEFAULT_PLAN.to_json() == [
        {
            "percent": p,
            "min_duration_s": d,
            "min_samples": n,
            "max_duration_s": 86400,
            "approval": "auto",
        }
        for p, d, n in [(10, 600, 200), (25, 600, 200), (50, 600, 200), (100, 0, 0)]
    ]
    assert [g.to_json() for g in DEFAULT_GATES] == [
        {
            "metric": "latency_p95_ms",
            "source": "ingest",
            "max_increase_pct": 20,
            "on_fail": "rollback",
        },
        {
            "metric": "error_rate",
            "source": "ingest",
            "max_increase_abs": 0.01,
            "on_fail": "rollback",
        },
        {"metric": "cost_per_request", "source": "ingest", "max": 0.05, "on_fail": "rollback"},
        {"metric": "score:*", "source": "ingest", "max_drop_abs": 0.05, "on_fail": "rollback"},
    ]


def test_spec_example_plan_and_gates_parse():
    plan = Plan.from_json(
        [
            {"percent": 10, "min_duration_s": 600, "min_samples": 200},
            {"percent": 50, "min_duration_s": 600, "min_samples": 200, "approval": "manual"},
            {"percent": 100, "min_duration_s": 0, "min_samples": 0},
        ]
    )
    (gate,) = parse_gates(
        [
            {
                "metric": "error_rate",
                "source": "ingest",
                "max_increase_abs": 0.01,
                "min_samples": 200,
                "on_fail": "rollback",
            }
        ]
    )

    assert [s.percent for s in plan.steps] == [10, 50, 100]
    assert plan.steps[1].approval == "manual"
    assert plan.steps[0].max_duration_s == 86400
    assert (gate.rule, gate.limit, gate.min_samples) == ("max_increase_abs", 0.01, 200)


def step(percent, **extra):
    return {"percent": percent, "min_duration_s": 0, "min_samples": 0, **extra}


@pytest.mark.parametrize(
    ("plan", "field"),
    [
        ([], "plan"),
        ({"percent": 100}, "plan"),
        ([step(10), step(10), step(100)], "plan[1].percent"),
        ([step(50), step(25), step(100)], "plan[1].percent"),
        ([step(10), step(50)], "plan[1].percent"),
        ([step(0), step(100)], "plan[0].percent"),
        ([step(True), step(100)], "plan[0].percent"),
        ([step(10.5), step(100)], "plan[0].percent"),
        ([step(10, min_samples=-1), step(100)], "plan[0].min_samples"),
        ([{"percent": 100, "min_samples": 0}], "plan[0].min_duration_s"),
        ([step(100, approval="sometimes")], "plan[0].approval"),
        ([step(100, min_duration_s=50, max_duration_s=10)], "plan[0].max_duration_s"),
        ([step(100, speed=2)], "plan[0].speed"),
    ],
)
def test_invalid_plan_raises_naming_the_field(plan, field):
    with pytest.raises(ConfigError) as raised:
        Plan.from_json(plan)

    assert raised.value.field == field
    assert str(raised.value).startswith(field)


@pytest.mark.parametrize(
    ("gate", "field"),
    [
        ({"metric": "latency_p90_ms", "max": 1}, "gates[0].metric"),
        ({"metric": "score:", "max": 1}, "gates[0].metric"),
        ({"metric": "error_rate"}, "gates[0]"),
        ({"metric": "error_rate", "max": 0.1, "max_increase_abs": 0.01}, "gates[0]"),
        ({"metric": "latency_p95_ms", "max_increase_pct": 0}, "gates[0].max_increase_pct"),
        ({"metric": "latency_p95_ms", "max_increase_pct": "20"}, "gates[0].max_increase_pct"),
        ({"metric": "error_rate", "max_increase_abs": 2}, "gates[0].max_increase_abs"),
        ({"metric": "error_rate", "max": 0.1, "on_fail": "ignore"}, "gates[0].on_fail"),
        ({"metric": "error_rate", "max": 0.1, "source": "datadog"}, "gates[0].source"),
        ({"metric": "error_rate", "max": 0.1, "min_samples": -5}, "gates[0].min_samples"),
        ({"metric": "error_rate", "max": 0.1, "query": "up"}, "gates[0].query"),
        ({"metric": "error_rate", "max": 0.1, "threshold": 3}, "gates[0].threshold"),
    ],
)
def test_invalid_gate_raises_naming_the_field(gate, field):
    with pytest.raises(ConfigError) as raised:
        parse_gates([gate])

    assert raised.value.field == field


def test_null_fields_take_their_defaults():
    plan = Plan.from_json([step(100, max_duration_s=None, approval=None)])
    (gate,) = parse_gates([{"metric": "error_rate", "max": 0.1, "source": None, "min": None}])

    assert plan.steps[0].max_duration_s == 86400
    assert plan.steps[0].approval == "auto"
    assert (gate.source, gate.rule, gate.on_fail) == ("ingest", "max", "rollback")


def test_prometheus_gate_keeps_its_query_template():
    buckets = 'sum by (le) (increase(llm_latency_bucket{prompt="{prompt}"}[{window}]))'
    query = {"buckets": buckets}
    raw = {"metric": "latency_p95_ms", "source": "prometheus", "max": 2000, "query": query}

    (gate,) = parse_gates([raw])

    assert gate.query == query
    assert gate.to_json()["query"] == query


def test_gates_must_be_a_list():
    with pytest.raises(ConfigError, match="gates"):
        parse_gates({"metric": "error_rate", "max": 0.1})


gates_st = st.builds(
    Gate,
    metric=st.sampled_from(["latency_p50_ms", "latency_p99_ms", "cost_per_request", "score:*", "score:tone"]),
    rule=st.sampled_from(["max", "min", "max_increase_pct", "max_increase_abs", "max_drop_abs"]),
    limit=st.floats(min_value=0.001, max_value=1e4),
    source=st.sampled_from(["ingest", "langfuse"]),
    min_samples=st.none() | st.integers(0, 10**6),
    on_fail=st.sampled_from(["rollback", "pause"]),
)


@given(st.lists(gates_st, max_size=5))
def test_gates_survive_a_json_round_trip(gates):
    assert parse_gates([g.to_json() for g in gates]) == tuple(gates)


@given(st.lists(st.integers(1, 99), unique=True, max_size=6), st.integers(0, 10**5))
def test_plans_survive_a_json_round_trip(percents, duration):
    steps = tuple(Step(p, duration, duration, duration + 1) for p in [*sorted(percents), 100])

    assert Plan.from_json(Plan(steps).to_json()) == Plan(steps)


SHADOW_PLAN = [
    {"shadow": True, "percent": 20, "min_duration_s": 60, "min_samples": 100},
    {"percent": 10, "min_duration_s": 600, "min_samples": 200},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


def test_a_shadow_step_before_the_first_exposed_step_parses_and_exposes_nobody():
    plan = Plan.from_json(SHADOW_PLAN)

    shadow, first, last = plan.steps
    assert shadow.shadow and shadow.percent == 20 and shadow.exposed_percent == 0
    assert shadow.label == "shadow 20%" and first.label == "10%"
    assert not first.shadow and first.exposed_percent == 10
    assert plan.to_json()[0]["shadow"] is True and "shadow" not in plan.to_json()[1]
    assert Plan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize(
    ("steps", "field", "message"),
    [
        (
            [
                {"percent": 10, "min_duration_s": 0, "min_samples": 0},
                {"shadow": True, "percent": 20, "min_duration_s": 0, "min_samples": 0},
                {"percent": 100, "min_duration_s": 0, "min_samples": 0},
            ],
            "plan[1].shadow",
            "only before the first exposed step",
        ),
        (
            [{"shadow": True, "percent": 100, "min_duration_s": 0, "min_samples": 0}],
            "plan[0].shadow",
            "the last step must be an exposed step",
        ),
        (
            [
                {"shadow": "yes", "percent": 10, "min_duration_s": 0, "min_samples": 0},
                {"percent": 100, "min_duration_s": 0, "min_samples": 0},
            ],
            "plan[0].shadow",
            "must be true or false",
        ),
        (
            [
                {"shadow": True, "percent": 20, "min_duration_s": 0, "min_samples": 0},
                {"shadow": True, "percent": 10, "min_duration_s": 0, "min_samples": 0},
                {"percent": 100, "min_duration_s": 0, "min_samples": 0},
            ],
            "plan[1].percent",
            "must be greater than the previous step's 20",
        ),
    ],
)
def test_misplaced_or_malformed_shadow_steps_are_refused_naming_the_field(steps, field, message):
    with pytest.raises(ConfigError) as refused:
        Plan.from_json(steps)

    assert refused.value.field == field and message in refused.value.message


@given(
    shadows=st.lists(st.integers(1, 100), max_size=3, unique=True).map(sorted),
    exposed=st.lists(st.integers(1, 99), max_size=3, unique=True).map(sorted),
)
def test_shadow_steps_then_exposed_steps_each_increasing_always_parse(shadows, exposed):
    steps = [{"shadow": True, "percent": p, "min_duration_s": 0, "min_samples": 0} for p in shadows]
    steps += [{"percent": p, "min_duration_s": 0, "min_samples": 0} for p in [*exposed, 100]]

    plan = Plan.from_json(steps)

    assert [s.exposed_percent for s in plan.steps] == [0] * len(shadows) + [*exposed, 100]
