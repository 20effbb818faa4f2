from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fakehost import FakeHost  # noqa: E402  (helpers shared by the driver tests)

@pytest.fixture
def fakehost(tmp_path) -> FakeHost:
    return FakeHost(tmp_path / "host")
