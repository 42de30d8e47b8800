"""Lowering: PyTorch -> Relax (:mod:`.importer`), then the conv / linear layers found in it with
the epilogue chains their kernels absorb (:mod:`.chains`). :func:`.lower.lower` runs both, once
per model."""
