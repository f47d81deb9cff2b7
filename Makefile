# The two commands of the README: `make demo` and `make test`. Both start with the idempotent
# set-up (venv with pinned ROS 2 wheels + torch CPU, then the colcon build).
# ROS_DISTRO=kilted (default) or jazzy picks the distribution: `make test ROS_DISTRO=jazzy`;
# each has its own venv and build-/install-/log- directories (scripts/distro.sh).
SHELL := /bin/bash
ENV := source scripts/env.sh
PYTEST_ARGS ?=
ROS_DISTRO ?= kilted
export ROS_DISTRO

.PHONY: setup demo test lint generate bench clean help
help:  ## list targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:  ## venv + pinned dependencies + colcon build (seconds when already done)
	@bash scripts/setup.sh

demo: setup  ## stream the bundled sample frames through the node over DDS; writes outputs/demo/
	@$(ENV) && python bin/dpt_demo --out outputs/demo

test: setup  ## the whole test suite (unit + integration over real DDS + colcon build + lint)
	@$(ENV) && python -m pytest test $(PYTEST_ARGS)

lint:  ## ruff over the package, tests, benchmarks and launch files
	@$(ENV) && ruff check .

generate:  ## rewrite config/dpt.yaml, the launch arguments and the docs' parameter table from the spec
	@$(ENV) && python -m dpt_perception.ros.generate

clean:  ## remove colcon build products of both distributions (the venvs stay)
	rm -rf build install log build-jazzy install-jazzy log-jazzy
