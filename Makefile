# Two commands for users: `make demo` and `make test`. Each sets itself up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean docs

# The docs site: the CLI and pathway-file references are generated from the code (docs/gen/);
# `make test` fails if the committed copies are stale or the site has a broken link.
DOCS_GEN := docs/gen/cli_reference.py docs/gen/pathway_reference.py
export NO_MKDOCS_2_WARNING := 1

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
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

clean:
	rm -rf .nim .pytest_cache
