"""Session-wide test settings, and the session's one kernel VM boot (tests/vmrun.py), shared by
every selected test module that registered a guest part."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests import vmrun

# Time is never asserted in tests (benchmarks/ measures it): no per-example deadline, and no
# health check that fails a test for being slow on a loaded machine.
settings.register_profile("pynvmetcp", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pynvmetcp")


@pytest.fixture(scope="session")
def vm_boot(request, tmp_path_factory) -> vmrun.SharedBoot:
    selected = {getattr(getattr(item, "module", None), "__name__", "")
                for item in request.session.items}
    parts = [p for p in vmrun.PARTS.values() if p.module in selected]
    return vmrun.SharedBoot(parts, tmp_path_factory.mktemp("vm"))
