"""A Ctrl-C during a build's model or fetch stage is never lost, whatever the running coroutine does
with the cancellation it turns into (finer_datasets.core.aio.run_async)."""

import asyncio
import os
import signal
import sys

import pytest

from finer_datasets.core.aio import run_async


@pytest.fixture(autouse=True)
def keyboard_sigint():
    """Ctrl-C as at a terminal (a shell's background job, CI's included, starts with it ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


async def swallowing(seconds=5.0):
    """A coroutine that swallows its cancellation, as asyncio.wait_for racing its inner call's
    completion does on Python 3.11 (or a library's shielded clean-up)."""
    asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        pass
    return "finished as if nothing happened"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10's asyncio.run raises the interrupt itself")
def test_plain_asyncio_run_loses_a_ctrl_c_the_coroutine_swallows():
    """The failure run_async exists for (if asyncio ever stops losing it, this test says so)."""
    assert asyncio.run(swallowing()) == "finished as if nothing happened"


def test_run_async_raises_the_ctrl_c_the_coroutine_swallowed():
    with pytest.raises(KeyboardInterrupt):
        run_async(swallowing())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_run_async_cancels_the_main_task_so_it_can_clean_up():
    cleaned = []

    async def cleaning():
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        try:
            await asyncio.sleep(5)
        finally:
            cleaned.append(True)

    with pytest.raises(KeyboardInterrupt):
        run_async(cleaning())
    assert cleaned == [True]


def test_run_async_leaves_an_ignored_ctrl_c_ignored():
    """A run started with Ctrl-C ignored (nohup, a background job) keeps it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    assert run_async(swallowing(0.2)) == "finished as if nothing happened"
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_run_async_returns_the_result_and_passes_errors():
    async def value():
        return 42

    async def failing():
        raise ValueError("boom")

    assert run_async(value()) == 42
    with pytest.raises(ValueError, match="boom"):
        run_async(failing())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
