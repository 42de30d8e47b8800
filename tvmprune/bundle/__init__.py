"""Runtime bundles: run a compiled model on a board with no TVM or Python install.

* :mod:`.toolchain`     -- cross g++, flags and qemu of each architecture;
* :mod:`.runtime_build` -- cross-builds libtvm_ffi.so + libtvm_runtime.so from the wheels' sources (cached);
* :mod:`.runner_build`  -- builds ``tvmprune-run`` (``runner.cc``, ``npy.h``) against that runtime;
* :mod:`.bundle`        -- ``compile --bundle``: OUT/lib + OUT/bin beside model.so;
* :mod:`.run`           -- ``tvmprune run``: natively, or a foreign bundle under qemu;
* :mod:`.command`       -- the CLI glue.
"""
