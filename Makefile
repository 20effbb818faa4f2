# The two commands of the quick start, plus the longer runs. Every target bootstraps itself.
PY := .venv/bin/python
.PHONY: demo test bench fuzz soak captures clean

demo:
	@scripts/bootstrap.sh
	@$(PY) -m pynvmetcp.demo

test:
	@EXTRAS=test scripts/bootstrap.sh
	@$(PY) -m pytest -q -p no:cacheprovider tests

bench:
	@EXTRAS=test,bench scripts/bootstrap.sh
	@$(PY) -m benchmarks

captures:
	@EXTRAS=test scripts/bootstrap.sh
	@$(PY) scripts/make_captures.py

clean:
	rm -rf .venv build *.egg-info
