#!/bin/sh
# Install what the `browser` tests (tests/view/test_view_browser.py) need: Debian's chromium,
# driven by Playwright (a Python package, in the `test` extra). Playwright's own browser
# downloads are not used: the tests launch /usr/bin/chromium.
set -eu
if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium
fi
python -c "import playwright" 2>/dev/null || pip install -q "playwright>=1.40"
chromium --version
