"""Timing, in one place: a kernel alone (:mod:`.kernel`) and a whole compiled model (:mod:`.model`),
on this machine or on a board over RPC."""
