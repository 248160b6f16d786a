# Two commands for users: `make demo` and `make test`. Each sets itself up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := nim_pathway models store orchestration notifications reports flows tasks

.PHONY: demo test test-fast lint bench soak clean docs

# Generated files: the CLI and pathway-file references (docs/gen/) and the bank-holiday table
# (tools/); `make test` fails if a committed copy is stale or the docs site has a broken link.
DOCS_GEN := docs/gen/cli_reference.py docs/gen/pathway_reference.py tools/gen_bank_holidays.py
export NO_MKDOCS_2_WARNING := 1

$(STAMP): pyproject.toml
	@echo "Installing nim-pathway and its dependencies into $(VENV) (1-2 minutes the first time) ..."
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# setuptools' notice that an editable install follows the working tree says what we want
	PYTHONWARNINGS="ignore:Editable installation:UserWarning" $(BIN)/pip install --quiet -e '.[test]'
	@echo "... installed; byte-compiling the project"
	@# byte-compile the project as pip does installed packages: with PYTHONDONTWRITEBYTECODE set
	@# every command would otherwise compile its modules from source (~0.13 s each time)
	$(BIN)/python -m compileall -q $(PACKAGES) >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nim-pathway demo --stack

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache  # the layers and no import cycles (pyproject.toml)
	for g in $(DOCS_GEN); do $(BIN)/python $$g --check || exit 1; done
	@# not --quiet: it drops the warnings --strict counts; the log is shown only on failure
	d=$$(mktemp -d) && out=$$($(BIN)/mkdocs build --strict --site-dir $$d 2>&1); rc=$$?; rm -rf $$d; \
	  [ $$rc = 0 ] || { echo "$$out"; echo 'mkdocs build --strict failed: see the warnings above'; exit $$rc; }
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile --durations 15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not slow'

lint: $(STAMP)
	$(BIN)/ruff check .

docs: $(STAMP)
	for g in $(DOCS_GEN); do $(BIN)/python $$g || exit 1; done
	$(BIN)/mkdocs serve

bench: $(STAMP)
	$(BIN)/python -m bench

# The chaos soak (issue 30): a cohort through the commands on PostgreSQL under faults, checked
# against the pure engine; its figures go to bench/RESULTS.md. Replay a run: make soak SEED=...
CASES ?= 200
MONTHS ?= 18
FAULT_EVERY ?= 3
soak: $(STAMP)
	$(BIN)/python -m bench.soak --cases $(CASES) --months $(MONTHS) --fault-every $(FAULT_EVERY) \
	  $(if $(SEED),--seed $(SEED)) --parallel --write-results

clean:
	rm -rf .nim .pytest_cache
