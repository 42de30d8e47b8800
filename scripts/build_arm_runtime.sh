#!/usr/bin/env bash
# Builds the board runtime of `tvmprune compile --bundle` on a fresh machine: installs Debian's
# cross g++ and qemu-user-static if missing (scripts/install_toolchains.sh), then cross-builds
# libtvm_ffi.so, libtvm_runtime.so and tvmprune-run from the sources the installed apache-tvm /
# apache-tvm-ffi wheels ship, for armv7 and aarch64 (or the architectures given: armv7 aarch64
# x86_64). Cached in ${TVMPRUNE_CACHE_DIR:-~/.cache/tvmprune}/runtime/<triple>-<tvm version>/;
# rebuilt only when missing or when its inputs change. About 2-4 minutes per architecture on
# 2 cores (JOBS=2 compiler processes; set JOBS to change).
set -eu
cd "$(dirname "$0")/.."
bash scripts/install_toolchains.sh
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" python -m tvmprune.bundle --jobs "${JOBS:-2}" "$@"
