#!/usr/bin/env bash
# Install everything Flywheel needs on a fresh Debian/Ubuntu machine: system packages
# (fonts for multilingual rendering, tesseract OCR), then the Python package with pinned torch.
set -euo pipefail
cd "$(dirname "$0")/.."

# tesseract language packs: Latin, Chinese, Japanese, Korean, Arabic, Devanagari, Thai, Cyrillic, Bengali, Tamil,
# Gujarati (the captioners' offline OCR); libraqm0 gives Pillow complex-script shaping for synthetic text renders;
# chromium is the browser the dashboard's Playwright test drives (`playwright install` cannot download here).
APT_PACKAGES="fonts-noto-core fonts-noto-cjk libraqm0 tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim
  tesseract-ocr-chi-tra tesseract-ocr-jpn tesseract-ocr-kor tesseract-ocr-ara tesseract-ocr-hin tesseract-ocr-tha
  tesseract-ocr-rus tesseract-ocr-ben tesseract-ocr-tam tesseract-ocr-guj chromium"
if command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
  fi
else
  echo "warning: no apt-get; install these yourself: $APT_PACKAGES" >&2
fi

PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
