# kfp-mlops: every target creates the virtual environment it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REPO ?= ghcr.io/kfp-mlops
COMPONENT_IMAGE ?= $(IMAGE_REPO)/component:$(VERSION)
SERVING_IMAGE_V2 ?= $(IMAGE_REPO)/mlserver:$(VERSION)
SERVING_IMAGE_SELDON ?= $(IMAGE_REPO)/seldon:$(VERSION)
PYTEST_ARGS ?=

.PHONY: env tools run test test-fast lint compile notebooks images push-images bench constraints clean image-env seldon-env

## env: .venv, every role's extras and the test tools (".[dev]"), at the versions of constraints.txt
env: $(VENV)/.installed

# setuptools prints a notice on every editable install of a mapped package (about folders in the working
# directory named like the package: there is none, the code is under src/); a notice, not a warning.
QUIET_EDITABLE := PYTHONWARNINGS="ignore:Editable installation"

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(QUIET_EDITABLE) $(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

## tools: system programs the tests use — nginx (local router), wrk (benchmarks), prometheus-pushgateway
## (batch-job metrics); kubectl must exist
tools:
	@if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then \
	  echo "installing nginx-light and wrk (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null; \
	fi
	@if [ ! -x /usr/bin/prometheus-pushgateway ]; then \
	  echo "installing prometheus-pushgateway (Debian package; tests push drift and rollout metrics to it)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-pushgateway >/dev/null; \
	fi
	@command -v kubectl >/dev/null || { echo "kubectl is required for kustomize builds (Debian/Google Cloud SDK package kubectl)"; exit 1; }

## run: the main job — the training pipeline on Iris, locally (kfp.local, W&B offline); it deploys the
## model it trained (deploy mode single, chosen explicitly), so it can be run again and again
run: env
	$(BIN)/kfp-mlops run training --deploy-mode single

## test: the static checks, then every test, including whole-pipeline and notebook runs
test: env seldon-env image-env tools lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: ruff (lint and format check) and mypy on the package, components and pipelines; the import
## layers are a test (tests/test_architecture.py)
lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## seldon-env: .venv-seldon, the seldon runtime's own environment (Python 3.12: seldon-core 1.19 needs it),
## kfp-mlops[seldon] at the versions of constraints-seldon.txt
SELDON_VENV ?= .venv-seldon
SELDON_PYTHON ?= $(firstword $(shell PYENV_VERSION=3.12 python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null) \
                  $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) python3.12)

seldon-env: $(SELDON_VENV)/.installed

$(SELDON_VENV)/.installed: pyproject.toml constraints-seldon.txt
	$(SELDON_PYTHON) -m venv $(SELDON_VENV)
	$(SELDON_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(QUIET_EDITABLE) $(SELDON_VENV)/bin/python -m pip install --quiet -c constraints-seldon.txt -e ".[seldon]"
	$(SELDON_VENV)/bin/python -m pip check
	touch $@

## image-env: .venv-image, built like the component image: Python 3.11, what images/component/Dockerfile
## copies (its COPY sources) copied apart and installed with its `RUN pip install` command, both read from
## the Dockerfile (not editable, its extras only). tests/test_compiled_pipelines.py runs the compiled
## pipelines in it; it is rebuilt when the Dockerfile or anything it copies changes.
IMAGE_VENV ?= .venv-image
IMAGE_PYTHON ?= $(firstword $(shell PYENV_VERSION=3.11 python3.11 -c 'import sys; print(sys.executable)' 2>/dev/null) \
                 $(wildcard $(HOME)/.pyenv/versions/3.11*/bin/python3.11) python3.11)
IMAGE_DOCKERFILE := images/component/Dockerfile
IMAGE_CONTEXT := $(shell sed -n 's/^COPY \(.*\) [^ ]*$$/\1/p' $(IMAGE_DOCKERFILE))
IMAGE_INSTALL := $(shell sed -n 's/^RUN \(pip install .*\)$$/\1/p' $(IMAGE_DOCKERFILE))

image-env: $(IMAGE_VENV)/.installed

$(IMAGE_VENV)/.installed: $(IMAGE_DOCKERFILE) $(shell find $(IMAGE_CONTEXT) -type f -not -path '*/__pycache__/*' 2>/dev/null)
	test -x $(IMAGE_VENV)/bin/pip || { $(IMAGE_PYTHON) -m venv $(IMAGE_VENV) && $(IMAGE_VENV)/bin/python -m pip install --quiet --upgrade pip; }
	rm -rf $(IMAGE_VENV)/context && mkdir $(IMAGE_VENV)/context
	touch $@.copied  # before copying: a file changed while installing leaves the environment out of date
	cp -R $(IMAGE_CONTEXT) $(IMAGE_VENV)/context/
	cd $(IMAGE_VENV)/context && PATH="$(abspath $(IMAGE_VENV))/bin:$$PATH" PIP_QUIET=1 $(IMAGE_INSTALL)
	rm -rf $(IMAGE_VENV)/context
	mv $@.copied $@

## test-fast: skip the tests that run whole pipelines or notebooks
test-fast: env
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## notebooks: runs every notebook and writes it back with its outputs (the committed ones are what the code
## shows: tests/test_notebooks.py runs them again and compares)
notebooks: env
	$(BIN)/python -m tests.support.notebooks notebooks/*.ipynb

## compile: pipelines/compiled/<name>.yaml (KFP) and <name>.vertex.yaml (Vertex AI)
compile: env
	$(BIN)/kfp-mlops compile --image $(COMPONENT_IMAGE)

## images: the component image and both model-server images (needs a Docker engine)
images:
	docker build -f images/component/Dockerfile -t $(COMPONENT_IMAGE) .
	docker build -f images/mlserver/Dockerfile -t $(SERVING_IMAGE_V2) .
	docker build -f images/seldon/Dockerfile -t $(SERVING_IMAGE_SELDON) .

## push-images: all three images to IMAGE_REPO; pass the same names to compile (--image) and to runs
## (serving_image_v2, serving_image_seldon), as the README's cluster section shows
push-images: images
	docker push $(COMPONENT_IMAGE)
	docker push $(SERVING_IMAGE_V2)
	docker push $(SERVING_IMAGE_SELDON)

## bench: local pipeline timings and per-task overhead
bench: env
	$(BIN)/python bench/bench_local_run.py

## constraints: re-pin every version after changing pyproject.toml
constraints:
	rm -rf .constraints-venv
	$(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/python -m pip install --quiet --upgrade pip
	.constraints-venv/bin/python -m pip install --quiet ".[dev]"
	{ sed -n '1,2p' constraints.txt; .constraints-venv/bin/pip freeze --exclude-editable | grep -v '^kfp-mlops' | sort -f; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf .constraints-venv

clean:
	rm -rf $(VENV) $(IMAGE_VENV) .kfp-mlops .pytest_cache build *.egg-info
