#!/bin/sh
# Install the programs the marked test suites drive, from Debian's packages (run as root; CI
# runs it first): QEMU for the live (-m live), register-stub (-m qemu_stub) and Linux (-m qemu)
# suites, gdb for the gdb command file, and chromium for the browser suite (-m browser), which
# Playwright (a Python package in the `test` extra) drives; Playwright's own browser downloads
# are not used. The default suite (the README's test command) needs none of them.
set -eu
need=""
for pair in qemu-system-x86_64:qemu-system-x86 qemu-system-aarch64:qemu-system-arm \
    qemu-system-riscv64:qemu-system-misc gdb:gdb chromium:chromium; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need="$need ${pair#*:}"
done
if [ -n "$need" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    apt-get install -y -qq --no-install-recommends $need
fi
python -c "import playwright" 2>/dev/null || python -m pip install -q "playwright>=1.40"
qemu-system-x86_64 --version | head -n 1
chromium --version
