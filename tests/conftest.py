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


def _module(item: pytest.Item) -> str:
    return getattr(getattr(item, "module", None), "__name__", "")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules that need the kernel VM run last, each whole and in its order: the shared
    boot starts with the session (``vm_boot``), and the other tests run while it works."""
    in_vm = {p.module for p in vmrun.PARTS.values()}
    items.sort(key=lambda item: _module(item) in in_vm)  # a stable sort


@pytest.fixture(scope="session", autouse=True)
def vm_boot(request, tmp_path_factory):
    """The session's shared boot of the selected modules' parts, started before the first test;
    a guest still running when the session ends (interrupted) is killed with it."""
    selected = {_module(item) for item in request.session.items}
    parts = [p for p in vmrun.PARTS.values() if p.module in selected]
    boot = vmrun.SharedBoot(parts, tmp_path_factory.mktemp("vm"))
    boot.start()
    yield boot
    vmrun.kill_guests()
