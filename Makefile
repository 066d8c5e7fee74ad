# Set-up, tests and the book.  The virtual environment lives in .venv inside
# this checkout (ignored by git), so each checkout runs its own code; it is
# reinstalled when requirements.txt changes.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
FOLDS ?= 0 1 2

.PHONY: venv data book test unit notebooks book-build site-check reproduce clean

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.installed
	@# editable install of this checkout
	@$(PY) -m pip install -q --no-deps --no-build-isolation -e . >/dev/null

data: venv  ## find or download and verify the Magnetic Tile dataset
	$(PY) -m defectlib data

book: venv book-build  ## build the website into _build/html
	@echo "Open $(CURDIR)/_build/html/index.html"

book-build:
	$(VENV)/bin/jupyter-book build . -W --keep-going

site-check:  ## every page parsed and opened in headless Chromium (needs chromium, chromium-driver)
	$(PY) tests/site_check.py _build/html --screenshots _build/screenshots --weights --max-page-mb 3

unit: venv
	$(PY) -m pytest -q --durations=15 tests

notebooks: venv  ## execute every notebook in the smoke profile (outputs are not written back)
	DEFECTLIB_PROFILE=smoke $(PY) -m pytest -q --nbval-lax --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider notebooks

test: unit notebooks book-build site-check  ## everything CI runs

FINAL_RUNG = $(shell $(PY) -c "from defectlib import config; print(list(config.load_family('configs/ladder.yaml'))[-1])" 2>/dev/null)

reproduce: venv  ## full profile: every run of the report, then re-execute the notebooks in place
	for cfg in $(filter-out configs/campaign_8000.yaml,$(wildcard configs/*.yaml)); do \
	  $(PY) -m defectlib train --config $$cfg --fold $(FOLDS) || exit 1; done
	$(PY) -m defectlib train --config configs/campaign_8000.yaml --fold 0   # chapter 6: fold 0 settled it
	$(PY) -m defectlib train --config configs/campaign.yaml --arm unetplusplus c256 --fold 0 1 2 --seed-offset 5
	$(PY) -m defectlib train --config configs/ladder.yaml --fold 0 1 2 3 4 --predict test
	$(PY) -m defectlib train --config configs/ladder.yaml --arm $(FINAL_RUNG) --fold 0 1 2 3 4 --seed-offset 5 --predict test
	$(PY) -m defectlib train --config configs/ladder.yaml --arm $(FINAL_RUNG) --fold 0 1 2 3 4 --partition random
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=3600 notebooks/*.ipynb

clean:
	rm -rf _build
