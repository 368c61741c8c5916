# Everything runs inside the project's own virtual environment (.venv), created by uv from uv.lock.
# uv itself is bootstrapped into .tools/ with the machine's Python, so a fresh machine needs only
# python3 (>= 3.10) and make.
PYTHON ?= python3
UV := .tools/bin/uv
SHARED ?= ../shared
CLIPS := $(SHARED)/data/surveillance-fight
RUN ?= runs/demo

.PHONY: setup demo test test-slow test-all lint bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.9

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra onnx
	touch $@

setup: .venv/.synced

# Main job: manifest of the shared CCTV clips, then Ray Data feature extraction on a local Ray instance.
demo: setup
	.venv/bin/nexara dataset scan --csv $(CLIPS)/clips.csv --out $(RUN)/manifest.parquet
	.venv/bin/nexara features $(RUN)/manifest.parquet --out $(RUN)/features

test: setup
	.venv/bin/python -m pytest

test-slow: setup
	.venv/bin/python -m pytest -m slow

test-all: setup
	.venv/bin/python -m pytest -m ''

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: setup
	.venv/bin/python benchmarks/bench_media.py
	.venv/bin/python benchmarks/bench_features.py

clean:
	rm -rf .venv .tools runs
