"""Fixtures of the target tests."""
from __future__ import annotations

import pytest

from tests.target.support import running


@pytest.fixture
def target():
    """A target with one 16 MiB memory namespace, an I/O port and a discovery-only port."""
    with running() as t:
        yield t
