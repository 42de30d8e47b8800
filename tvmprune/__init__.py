"""tvmprune: prune CNNs in PyTorch, compile them with Apache TVM into sparse CPU code.

Sub-packages:
    prune     -- pruning patterns, criteria, rearrangement, dependency graph (PyTorch only)
    frontend  -- PyTorch -> Relax import and sparse conversion passes
    kernels   -- TE computes and TensorIR schedule spaces for sparse (and dense) ops
    tune      -- MetaSchedule glue, tuning databases, RPC
"""

__version__ = "0.1.0"
