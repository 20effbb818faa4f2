"""Fixtures of the target tests."""
from __future__ import annotations

import pytest

from tests.target.support import running


@pytest.fixture(autouse=True, params=["uvloop", "asyncio"])
def loop_kind(request, monkeypatch):
    """Every test here runs on each event loop a target runs on (``new_event_loop``: uvloop's
    by default, the standard one when uvloop is absent or not wanted): the target is plain
    asyncio and must behave the same on both."""
    monkeypatch.setenv("PYNVMETCP_LOOP", request.param)
    return request.param


@pytest.fixture
def target(loop_kind):
    """A target with one 16 MiB memory namespace, an I/O port and a discovery-only port."""
    with running() as t:
        assert type(t._loop).__module__.split(".")[0] == loop_kind
        yield t
