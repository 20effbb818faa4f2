# The two commands of the quick start, plus the longer runs. Every target bootstraps itself.
PY := .venv/bin/python
.PHONY: demo test bench fuzz soak captures clean

demo:
	@EXTRAS=driver scripts/bootstrap.sh
	@$(PY) -m pynvmetcp.demo
	@$(PY) -m lightos_driver.demo

test:
	@EXTRAS=test,driver scripts/bootstrap.sh
	@$(PY) -m pytest -q -p no:cacheprovider tests

bench:
	@EXTRAS=test,bench scripts/bootstrap.sh
	@$(PY) -m benchmarks

FUZZ_SECONDS ?= 120
fuzz:
	@EXTRAS=test scripts/bootstrap.sh
	@for t in framer decoders engines; do \
		echo "fuzzing $$t for $(FUZZ_SECONDS) s"; \
		PYTHONPATH=. $(PY) tests/fuzz/run_atheris.py $$t -max_total_time=$(FUZZ_SECONDS) \
			-max_len=4096 tests/fuzz/corpus/$$t || exit 1; \
	done

SOAK_MINUTES ?= 10
soak:
	@EXTRAS=test scripts/bootstrap.sh
	@$(PY) -m tests.reliability.soak --minutes $(SOAK_MINUTES) --hosts 8 --queues 4

captures:
	@EXTRAS=test scripts/bootstrap.sh
	@$(PY) scripts/make_captures.py

clean:
	rm -rf .venv build *.egg-info
