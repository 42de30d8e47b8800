"""``python -m tvmprune.bundle [ARCH ...] [--jobs N]``: build (or find cached) board runtimes.

Builds libtvm_ffi.so, libtvm_runtime.so and tvmprune-run for each architecture (default
armv7 and aarch64) into the cache and prints where they are, their size and build time.
"""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import TvmpruneError
from .runner_build import build_runner
from .runtime_build import build_runtime
from .toolchain import ARCHES, toolchain_for


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tvmprune.bundle", description=__doc__.splitlines()[0])
    p.add_argument("arches", nargs="*", default=["armv7", "aarch64"], choices=ARCHES, metavar="ARCH",
                   help=f"architectures ({', '.join(ARCHES)}; default armv7 aarch64)")
    p.add_argument("--jobs", type=int, default=2, help="compiler processes at a time (default 2)")
    args = p.parse_args(argv)
    try:
        for arch in args.arches:
            t0 = time.time()
            libs = build_runtime(toolchain_for(arch), jobs=args.jobs, log=print)
            runner = build_runner(libs)
            files = [*libs.libraries, runner]
            size = sum(f.stat().st_size for f in files)
            print(f"{arch}: {libs.directory}  ({size / 1e6:.1f} MB: "
                  + ", ".join(f"{f.name} {f.stat().st_size / 1e6:.1f} MB" for f in files)
                  + f"; {time.time() - t0:.0f} s)")
    except TvmpruneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
