"""Scheduling: each kernel's PrimFunc with a schedule applied (a tuned record, else its default)."""
