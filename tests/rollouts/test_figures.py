"""Every number a person reads: values with their units, changes, rules, durations."""

from hypothesis import given
from hypothesis import strategies as st

from rollouts.figures import (
    MINUS,
    change_text,
    duration_text,
    metric_text,
    number_text,
    percent_value,
    ratio_change_text,
    rule_text,
    tick_text,
    verdict_change_text,
)

METRIC_NAMES = ["requests", "latency_p95_ms", "error_rate", "cost_per_request", "score:tone"]
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


def test_chart_ticks_read_as_values_with_units():
    assert tick_text("error_rate", 0.025, 0.005) == "2.5%"
    assert tick_text("latency_p95_ms", 2000, 500) == "2,000 ms"
    assert tick_text("cost_per_request", 0.0015, 0.0005) == "$0.0015"
    assert tick_text("score:tone", 0.75, 0.05) == "0.75"


def test_figures_carry_their_units():
    assert metric_text("error_rate", 0.0123) == "1.23%"
    assert metric_text("latency_p99_ms", 1812.4) == "1,812 ms"
    assert metric_text("score:tone", None) == "—"
    assert rule_text("latency_p95_ms", "max_increase_pct", 20.0) == "at most +20% vs baseline"
    assert rule_text("error_rate", "max_increase_abs", 0.01) == "at most +1.00 pts vs baseline"
    assert rule_text("score:tone", "max_drop_abs", 0.05) == "at most −0.050 vs baseline"
    assert rule_text("cost_per_request", "max", 0.05) == "at most $0.0500"
    assert [duration_text(s) for s in (0, 45, 600, 250, 5400, 86400, 3 * 86400 + 7200)] == [
        "0 s",
        "45 s",
        "10 min",
        "4 min 10 s",
        "1 h 30 min",
        "24 h",
        "3 d 2 h",
    ]


def test_changes_are_signed_with_a_plus_or_the_typographic_minus():
    assert change_text("error_rate", 0.01) == "+1.00 pts"
    assert change_text("error_rate", -0.004) == "−0.40 pts"
    assert change_text("latency_p95_ms", -120.0) == "−120 ms"
    assert change_text("cost_per_request", 0.001) == "+$0.0010"
    assert ratio_change_text(0.9) == "−10.0%"
    assert verdict_change_text("latency_p95_ms", "max_increase_pct", 800.0, 1000.0) == "+25.0%"
    assert verdict_change_text("latency_p95_ms", "max_increase_pct", 0.0, 10.0) == "+10 ms"
    assert verdict_change_text("score:tone", "max_drop_abs", 0.8, 0.75) == "−0.050"
    assert number_text(-3.04, 1) == "−3.0"


@given(st.sampled_from(METRIC_NAMES), finite)
def test_a_figure_is_signed_with_the_typographic_minus_never_a_hyphen(metric, value):
    value_text, change = metric_text(metric, value), change_text(metric, value)

    assert "-" not in value_text + change + tick_text(metric, value, 0.01)
    assert value_text.startswith(MINUS) == (value < 0)
    assert change[0] == (MINUS if value < 0 else "+")


@given(st.sampled_from(METRIC_NAMES), st.floats(min_value=1e-9, max_value=1e6))
def test_a_change_and_its_opposite_differ_only_in_their_sign(metric, delta):
    up, down = change_text(metric, delta), change_text(metric, -delta)

    assert (up[0], down[0]) == ("+", MINUS)
    assert up[1:] == down[1:]


def seconds_of(text):
    units = {"d": 86400, "h": 3600, "min": 60, "s": 1}
    words = text.split()
    return sum(int(words[i]) * units[words[i + 1]] for i in range(0, len(words), 2))


@given(st.floats(min_value=0, max_value=1e8), st.floats(min_value=0, max_value=1e8))
def test_a_longer_duration_never_reads_shorter(a, b):
    shorter, longer = sorted((a, b))

    assert seconds_of(duration_text(shorter)) <= seconds_of(duration_text(longer))


@given(st.decimals(min_value=0, max_value=100, places=2))
def test_a_percent_is_a_whole_number_when_it_is_one(percent):
    value = percent_value(percent)

    assert value == float(percent)
    assert isinstance(value, int) == (percent == percent.to_integral_value())
