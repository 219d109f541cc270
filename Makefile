# Quick start: `make demo` (set up + run the embedded demo) and `make test` (set up + run the tests).
.PHONY: setup demo test bench
PY := .venv/bin/python

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m vknet_ros.demo --out out/demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) scripts/bench_postprocess.py
	$(PY) scripts/bench_backends.py
	$(PY) scripts/bench_ros.py
