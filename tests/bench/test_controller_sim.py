"""The controller simulation's model of late scores: every score arrives, within its delay."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.controller_sim import TICK_S, LateScores


@settings(max_examples=50, deadline=None)
@given(
    max_delay_s=st.floats(min_value=0, max_value=1200),
    per_tick=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=20),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_every_late_score_arrives_once_within_its_largest_delay(max_delay_s, per_tick, seed):
    rng = np.random.default_rng(seed)
    late = LateScores(max_delay_s)
    sent, arrived, last_due = 0, 0.0, 0
    for tick, n in enumerate(per_tick):
        late.send(rng, np.ones(n))
        sent += n
        arrived += late.arrived()[0]
        if n:
            last_due = tick + math.ceil((TICK_S + max_delay_s) / TICK_S) - 1
    # ticks pass with no new traffic until the last one sent is due
    for _ in range(len(per_tick), last_due + 1):
        late.send(rng, np.ones(0))
        arrived += late.arrived()[0]
    assert arrived == sent
    assert late.ring.sum() == 0


def test_late_scores_arrive_spread_over_the_delay():
    rng = np.random.default_rng(1)
    late = LateScores(600)
    late.send(rng, np.ones(10_000))
    counts = [late.arrived()[0]]
    for _ in range(45):
        late.send(rng, np.ones(0))
        counts.append(late.arrived()[0])

    assert sum(counts) == 10_000
    assert counts[0] < 300  # within the first tick: 15 s of 615
    assert 4_000 < sum(counts[:20]) < 6_000  # half by about 300 s
    assert counts[41:] == [0] * 5
