"""Reading a child's output line by line: the splitting, the blocking reader, the Trio collector.

The readers are fed through an OS pipe and a Trio memory stream, so every
case is exact and quick: no child is started, and the one bound under test
(a read that times out) is zero seconds.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from child_output import LineBuffer, LineCollector, LineReader

PORT = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=8))
def test_lines_do_not_depend_on_how_the_bytes_were_cut(data: bytes, cuts: list[int]) -> None:
    buffer = LineBuffer()
    lines: list[bytes] = []
    edges = [0, *sorted(cut for cut in cuts if cut <= len(data)), len(data)]
    for start, stop in itertools.pairwise(edges):
        lines += buffer.feed(data[start:stop])
    lines += buffer.end()
    expected = data.split(b"\n")
    assert lines == (expected if expected[-1] else expected[:-1])


@contextmanager
def pipe() -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """Both ends of an OS pipe, as a child's stdout and the child itself."""
    read_fd, write_fd = os.pipe()
    with open(read_fd, "rb", buffering=0) as reading, open(write_fd, "wb", buffering=0) as writing:
        yield reading, writing


def test_the_reader_gives_lines_then_the_unterminated_rest_then_none() -> None:
    with pipe() as (reading, writing):
        reader = LineReader(reading, timeout=5.0)
        writing.write(b"one\ntw")
        assert reader.readline() == "one"
        writing.write(b"o\nthree \xff")
        writing.close()
        assert reader.readline() == "two"
        assert reader.readline() == "three \\xff"
        assert reader.readline() is None
        assert reader.lines == ["one", "two", "three \\xff"]
        reader.close()


def test_a_read_with_no_line_in_time_raises_timeout_error() -> None:
    with pipe() as (reading, writing):
        reader = LineReader(reading)
        writing.write(b"no newline yet")
        with pytest.raises(TimeoutError, match="no line within 0 s"):
            reader.readline(timeout=0)
        reader.close()


def test_wait_for_skips_to_the_matching_line_and_says_none_at_the_end() -> None:
    with pipe() as (reading, writing):
        reader = LineReader(reading, timeout=5.0)
        writing.write(b"starting\nclient disconnected\nlater\n")
        writing.close()
        assert reader.wait_for(re.compile("disconnected")) == "client disconnected"
        assert reader.wait_for(re.compile("disconnected")) is None
        assert reader.rest() == ["starting", "client disconnected", "later"]
        reader.close()


async def test_the_collector_wakes_waiters_on_their_line_and_at_the_end() -> None:
    send, receive = trio.testing.memory_stream_one_way_pair()
    output = LineCollector()
    found: list[re.Match[bytes] | None] = []

    async def wait(count: int) -> None:
        found.append(await output.wait_for(PORT, count))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(output.collect, receive)
            nursery.start_soon(wait, 1)
            nursery.start_soon(wait, 2)
            await send.send_all(b"reply server listening on 127.0.0.1:")
            await trio.testing.wait_all_tasks_blocked()
            assert found == []
            await send.send_all(b"4242\nserved 0 connections\n")
            await trio.testing.wait_all_tasks_blocked()
            assert [match and match[1] for match in found] == [b"4242"]
            await send.aclose()
    assert found[1] is None
    assert output.ended
    assert output.count(PORT) == 1
    assert output.lines == [b"reply server listening on 127.0.0.1:4242", b"served 0 connections"]
