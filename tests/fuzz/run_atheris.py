"""atheris harness: `python tests/fuzz/run_atheris.py TARGET [libFuzzer flags]`.

`make fuzz` runs every target for a bounded time; crashes land in tests/fuzz/regressions/TARGET/
(libFuzzer's -artifact_prefix), where the pytest replay keeps them as regression cases.
"""
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from tests.fuzz.targets import TARGETS  # noqa: E402

if __name__ == "__main__":
    name = sys.argv.pop(1)
    out = Path(__file__).parent / "regressions" / name
    out.mkdir(parents=True, exist_ok=True)
    sys.argv.insert(1, f"-artifact_prefix={out}/")
    for arg in sys.argv[1:]:
        if not arg.startswith("-"):
            Path(arg).mkdir(parents=True, exist_ok=True)  # a corpus directory
    atheris.Setup(sys.argv, TARGETS[name])
    atheris.Fuzz()
