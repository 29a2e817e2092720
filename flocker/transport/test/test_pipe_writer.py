"""Tests for :class:`flocker.transport.PipeWriter` over real pipes."""

from __future__ import annotations

import os

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from .. import PAUSE_ABOVE, PipeWriter
from ..testtools import RecordingProducer

MiB = 1024 * 1024


def drain(fd: int) -> bytes:
    """What the pipe holds now (never waits: the reactor must go on)."""
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, MiB)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def turn() -> None:
    """Let the reactor run its writers once or twice."""
    await deferLater(reactor, 0.01, lambda: None)


@pytest_twisted.ensureDeferred
async def test_writes_at_once_while_the_pipe_takes_it() -> None:
    """What fits into the pipe is written by ``write`` itself, in order."""
    reading, writing = os.pipe()
    lost: list[bool] = []
    writer = PipeWriter(reactor, writing, lambda: lost.append(True))
    writer.write(b"hello ")
    writer.write(memoryview(b"world"))
    assert os.read(reading, 100) == b"hello world"
    writer.close()
    assert os.read(reading, 100) == b""  # closed: the reader sees the end
    os.close(reading)
    assert lost == []


@pytest_twisted.ensureDeferred
async def test_back_pressure() -> None:
    """
    What the pipe refuses waits; the producer is paused above
    ``PAUSE_ABOVE`` waiting bytes and resumed once all went, and every
    byte arrives in order.
    """
    reading, writing = os.pipe()
    writer = PipeWriter(reactor, writing, lambda: None)
    producer = RecordingProducer()
    writer.registerProducer(producer, True)
    payload = os.urandom(PAUSE_ABOVE + 3 * MiB)
    for start in range(0, len(payload), MiB):
        writer.write(payload[start : start + MiB])
    assert producer.calls == ["pause"]
    received = b""
    while len(received) < len(payload):
        received += drain(reading)
        await turn()
    assert received == payload
    assert producer.calls == ["pause", "resume"]
    writer.close()
    os.set_blocking(reading, True)
    assert os.read(reading, 1) == b""
    os.close(reading)


@pytest_twisted.ensureDeferred
async def test_close_waits_for_what_waits() -> None:
    """``close`` with bytes still waiting closes only once they went."""
    reading, writing = os.pipe()
    writer = PipeWriter(reactor, writing, lambda: None)
    payload = os.urandom(4 * MiB)
    writer.write(payload)
    writer.close()
    received = b""
    for _ in range(1000):
        received += drain(reading)
        if len(received) >= len(payload):
            break
        await turn()
    assert received == payload
    await turn()
    os.set_blocking(reading, True)
    assert os.read(reading, 1) == b""  # closed once everything went
    os.close(reading)


@pytest_twisted.ensureDeferred
async def test_reader_gone() -> None:
    """
    Once the reading end is gone (the command exited), writes are dropped
    and ``on_lost`` is called once; nothing raises.
    """
    reading, writing = os.pipe()
    lost: list[bool] = []
    writer = PipeWriter(reactor, writing, lambda: lost.append(True))
    os.close(reading)
    writer.write(b"x" * MiB)
    writer.write(b"y")
    writer.close()
    assert lost == [True] and writer.lost


def test_non_streaming_producer_is_pulled() -> None:
    """A pull producer is asked for data at once and after each drain."""
    reading, writing = os.pipe()
    writer = PipeWriter(reactor, writing, lambda: None)
    producer = RecordingProducer()
    writer.registerProducer(producer, False)
    assert producer.calls == ["resume"]
    writer.unregisterProducer()
    writer.close()
    os.close(reading)
