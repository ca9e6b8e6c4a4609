#!/usr/bin/env bash
# Install everything Flywheel needs on a fresh Debian/Ubuntu machine: system packages
# (fonts for multilingual rendering, tesseract OCR), then the Python package with pinned torch.
#
# Python: the active virtualenv when there is one ($VIRTUAL_ENV), else $PYTHON, else the first python3 on
# PATH. Recommended:  python3 -m venv .venv && . .venv/bin/activate && bash scripts/install.sh
# A repeat run with nothing changed takes seconds: pip is skipped when pyproject.toml and constraints.txt
# are unchanged since the last install into this interpreter and `import flywheel` finds this checkout.
# FLYWHEEL_SKIP_APT=1 skips the system packages; FLYWHEEL_FORCE_INSTALL=1 runs pip even when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd -P)"
step() { printf '[install %s] %s\n' "$1" "$2"; }

# tesseract language packs: Latin, Chinese, Japanese, Korean, Arabic, Devanagari, Thai, Cyrillic, Bengali, Tamil,
# Gujarati (the captioners' offline OCR); libraqm0 gives Pillow complex-script shaping for synthetic text renders;
# chromium is the browser the dashboard's Playwright test drives (`playwright install` cannot download here).
APT_PACKAGES="fonts-noto-core fonts-noto-cjk libraqm0 tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim
  tesseract-ocr-chi-tra tesseract-ocr-jpn tesseract-ocr-kor tesseract-ocr-ara tesseract-ocr-hin tesseract-ocr-tha
  tesseract-ocr-rus tesseract-ocr-ben tesseract-ocr-tam tesseract-ocr-guj chromium"
if [ "${FLYWHEEL_SKIP_APT:-0}" = "1" ]; then
  step 1/3 "system packages: skipped (FLYWHEEL_SKIP_APT=1)"
elif command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    step 1/3 "system packages: installing$missing (apt-get, a few minutes on a fresh machine)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
  else
    step 1/3 "system packages: all present"
  fi
else
  step 1/3 "system packages: no apt-get here; install these yourself: $(echo $APT_PACKAGES)" >&2
fi

if [ -n "${VIRTUAL_ENV:-}" ]; then
  PY="$VIRTUAL_ENV/bin/python"
else
  PY="${PYTHON:-python3}"
fi
PREFIX="$("$PY" -c 'import sys; print(sys.prefix)')"
if [ -z "${VIRTUAL_ENV:-}" ] && [ "$("$PY" -c 'import sys; print(sys.prefix == sys.base_prefix)')" = "True" ]; then
  step 2/3 "python: $PY installs into $PREFIX (no virtualenv active; see README to use one)"
else
  step 2/3 "python: $PY (virtualenv $PREFIX)"
fi

# The stamp names the interpreter and the hash of what decides the install; it lives in the checkout.
KEY="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
STAMP_DIR="$REPO/.install-stamps"
STAMP="$STAMP_DIR/$(printf '%s' "$PREFIX" | sha256sum | cut -c1-16)"
installed_here() {
  # -I: ignore PYTHONPATH and the current folder, so only the installed package can answer.
  (cd / && "$PY" -I -c 'import flywheel, pathlib, sys; sys.stdout.write(str(pathlib.Path(flywheel.__file__).resolve().parents[1]))' 2>/dev/null) \
    | grep -qxF "$REPO"
}
if [ "${FLYWHEEL_FORCE_INSTALL:-0}" != "1" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] && installed_here; then
  step 2/3 "python packages: up to date (pyproject.toml and constraints.txt unchanged); skipping pip"
else
  step 2/3 "python packages: pip install -e .[dev] with constraints.txt (torch and friends: minutes on a fresh machine)"
  "$PY" -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt -e ".[dev]"
  mkdir -p "$STAMP_DIR"
  printf '%s' "$KEY" > "$STAMP"
fi
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true

if installed_here; then
  step 3/3 "ok: flywheel imports from $REPO"
else
  step 3/3 "error: $PY cannot import flywheel from $REPO after the install" >&2
  exit 1
fi
