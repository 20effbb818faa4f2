"""Fixtures of the target tests."""
from __future__ import annotations

import pytest

from tests.target.support import running


@pytest.fixture(params=["uvloop", "asyncio"])
def target(request, monkeypatch):
    """A target with one 16 MiB memory namespace, an I/O port and a discovery-only port, on
    each event loop it runs on (``new_event_loop``: uvloop's by default, the standard one when
    uvloop is absent or not wanted): the target is plain asyncio and must behave the same."""
    monkeypatch.setenv("PYNVMETCP_LOOP", request.param)
    with running() as t:
        assert type(t._loop).__module__.split(".")[0] == request.param
        yield t
