"""The line buffer: every line appended by any thread is written once, whole, by the writer thread
without anyone asking; a forked child writes its own lines, never its parent's again."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from hypothesis import given
from hypothesis import strategies as st

from core.log_lines import LineBuffer, timestamp
from tests.servers import wait_for


def test_lines_from_many_threads_are_each_written_once_and_whole(tmp_path: Path) -> None:
    path = tmp_path / "lines.log"
    with open(path, "ab") as output:
        buffer = LineBuffer(output.fileno())

        def send(thread: int) -> None:
            for n in range(2000):
                buffer.append({"time": time.time(), "level": "info", "thread": thread, "n": n})

        threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        wait_for(lambda: path.read_bytes().count(b"\n") == 16_000, seconds=5)  # the writer, unasked
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert sorted((line["thread"], line["n"]) for line in lines) == [
        (t, n) for t in range(8) for n in range(2000)
    ]
    for thread in range(8):  # each thread's lines in its order
        assert [line["n"] for line in lines if line["thread"] == thread] == list(range(2000))


def test_a_forked_child_writes_its_lines_and_not_its_parents_again(tmp_path: Path) -> None:
    path = tmp_path / "lines.log"
    with open(path, "ab") as output:
        buffer = LineBuffer(output.fileno())
        buffer.append({"time": time.time(), "level": "info", "who": "parent"})

        child = os.fork()
        if child == 0:
            buffer.append({"time": time.time(), "level": "info", "who": "child"})
            time.sleep(0.5)  # the child's writer writes within FLUSH_SECONDS
            os._exit(0)
        os.waitpid(child, 0)
        buffer.flush()

    assert sorted(orjson.loads(line)["who"] for line in path.read_bytes().splitlines()) == ["child", "parent"]


UNIX_TIMES = st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False)  # until 2100


@given(st.lists(UNIX_TIMES | st.just(1_765_000_000.0005), min_size=1, max_size=20))
def test_a_timestamp_is_the_time_truncated_to_the_millisecond_whatever_came_before(
    times: list[float],
) -> None:
    for now in times + times[::-1]:  # the same times again, after others: nothing stale is kept
        text = timestamp(now)

        assert len(text) == 24 and text.endswith("Z")
        written = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        assert -1e-6 <= now - written < 0.001 + 1e-6
