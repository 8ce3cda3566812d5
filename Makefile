# One-command install and test. `make install` is re-runnable: a second run only checks.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo demo-smoke demo-agent clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	# Their declared pins cannot install on Python 3.11 (DESIGN.md); everything they
	# really import is in requirements.txt.
	$(BIN)/pip install -q --no-deps safety-gymnasium==1.0.0 gymnasium-robotics==1.2.2
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/python -c "import envs, slac, latent_adversary; print('install ok')"
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .

test: install lint
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(BIN)/python -m pytest -q -n 2 tests

# the README's first command: the shipped agent (demo-agent); demo-smoke is the workflow on a smoke run
demo: demo-agent

# the whole workflow on a smoke run it trains itself (source training, fine-tuning, evaluation, video)
demo-smoke: install
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(BIN)/python scripts/demo.py

# the shipped agent (agents/cartpole-tilted-none): source and zero-shot target table, a short
# fine-tune with its lifetime target cost, a video; about 10 minutes on 2 cores
demo-agent: install
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(BIN)/python scripts/demo_agent.py

clean:
	rm -rf $(VENV)
