#!/usr/bin/env bash
# Installs what tvmprune needs from Debian for ARM cross-compilation and emulation:
# the armv7 / aarch64 GCC cross toolchains (linking exported modules) and their g++ (building the
# board runtime of `compile --bundle`), their binutils (objdump checks), qemu-user-static (running
# bundles, the emulated aarch64 board), mmdebstrap (that board's root) and `file`.
# Safe to re-run; does nothing when everything is present.
set -u
need=()
for tool in arm-linux-gnueabihf-gcc aarch64-linux-gnu-gcc arm-linux-gnueabihf-g++ aarch64-linux-gnu-g++ \
    aarch64-linux-gnu-objdump arm-linux-gnueabihf-objdump qemu-aarch64-static qemu-arm-static mmdebstrap file; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -eq 0 ]; then
  echo "toolchains: all present"
  exit 0
fi
echo "toolchains: installing (missing: ${need[*]})"
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "toolchains: apt-get not found; install the ARM cross compilers yourself (ARM tests will be skipped)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null 2>&1 || true
if ! $SUDO apt-get install -y -qq gcc-arm-linux-gnueabihf gcc-aarch64-linux-gnu g++-arm-linux-gnueabihf \
    g++-aarch64-linux-gnu binutils-arm-linux-gnueabihf \
    binutils-aarch64-linux-gnu qemu-user-static mmdebstrap file >/dev/null; then
  echo "toolchains: apt-get install failed; ARM tests will be skipped" >&2
fi
exit 0
