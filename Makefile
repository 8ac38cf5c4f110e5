# make demo: set up, build archive.db from ingest/ and annotations/, serve it on 127.0.0.1:$(PORT)
# make test: set up, lint (ruff, configured in pyproject.toml), run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8001
export STET_USER ?= stet-demo

PRESS_SOURCE := National Council of Resistance of Iran, press release, August 2014
PRESS_TITLE := Press release: conference at the UN in Geneva on human rights in Iran and Iraq, 13 August 2014
UDHR_SOURCE := https://www.unicode.org/udhr/ (UDHR in Unicode; github.com/unicode-corpus/udhr-in-unicode at f4613da)

.PHONY: demo test clean chromium

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# archive.db is (re)built when a sample changes, one file at a time so that each plain text
# gets a title (an HTML file takes its <title>): ingesting again duplicates nothing and
# importing again adds nothing. The stamp is touched only when every step succeeded, so a
# failed build is resumed by the next `make demo`.
archive.db.built: $(BIN)/.installed $(shell find ingest annotations -type f 2>/dev/null)
	$(BIN)/stet ingest -s --db archive.db ingest/press/press-release-2014-08-13-geneva.txt \
	  --source "$(PRESS_SOURCE)" --title "$(PRESS_TITLE)"
	$(BIN)/stet ingest -s --db archive.db ingest/udhr/udhr_arb.html --source "$(UDHR_SOURCE)"
	$(BIN)/stet ingest -s --db archive.db ingest/udhr/udhr_arb.txt --source "$(UDHR_SOURCE)" \
	  --title "Universal Declaration of Human Rights - Arabic, Standard (plain text)"
	$(BIN)/stet ingest -s --db archive.db ingest/udhr/udhr_eng.html --source "$(UDHR_SOURCE)"
	$(BIN)/stet ingest -s --db archive.db ingest/udhr/udhr_eng.txt --source "$(UDHR_SOURCE)" \
	  --title "Universal Declaration of Human Rights - English (plain text)"
	$(BIN)/stet ingest -s --db archive.db ingest/udhr/udhr_pes_1.html --source "$(UDHR_SOURCE)"
	$(BIN)/stet ingest -s --db archive.db ingest/udhr/udhr_pes_1.txt --source "$(UDHR_SOURCE)" \
	  --title "Universal Declaration of Human Rights - Farsi, Western (plain text)"
	$(BIN)/stet import --db archive.db annotations/
	$(BIN)/stet verify --db archive.db
	touch $@

demo: archive.db.built
	$(BIN)/stet serve --db archive.db --port $(PORT)

test: $(BIN)/.installed chromium
	$(BIN)/ruff check stet tests benchmarks
	$(BIN)/python -m pytest -q

# The browser test drives Debian's Chromium through Playwright's Python package (never
# `playwright install`), and the Arabic PDF test draws with DejaVu Sans: both are installed
# here from Debian's packages when missing and running as root; where they cannot be
# installed, those tests skip and say why.
chromium:
	@{ command -v chromium >/dev/null 2>&1 && [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core) \
	      || echo "could not install chromium and fonts-dejavu-core: the tests that need them will skip"; \
	  else echo "chromium or fonts-dejavu-core is missing (install them as root): the tests that need them will skip"; fi; }

clean:
	rm -rf $(VENV) archive.db archive.db-wal archive.db-shm archive.db-public archive.db-workbench archive.db.built
