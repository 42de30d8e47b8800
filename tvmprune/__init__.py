"""tvmprune: prune CNNs in PyTorch, compile them with Apache TVM into sparse CPU code.

Sub-packages:
    prune     -- pruning patterns, criteria, rearrangement, dependency graph (PyTorch only)
    lower     -- PyTorch -> Relax import, conv / linear layers and their epilogue chains
    plan      -- a format per layer (roofline planners over the kernel family registry)
    kernels   -- TE computes and TensorIR schedules, one kernel family per module
    schedule  -- tuned or default schedules per kernel
    build     -- Relax rewrite, tvm.compile, module directories
    measure   -- timing kernels and models (here or over RPC)
    tune      -- MetaSchedule glue, tuning databases, RPC
See docs/architecture.md.
"""

__version__ = "0.1.0"
