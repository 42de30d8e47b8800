"""Packaging beyond what pyproject.toml can say: the shipped schedule records live in the
top-level ``schedules/`` folder of the repository and are installed as the package data
folder ``tvmprune/schedules/`` (so a non-editable install finds them too)."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["tvmprune", "tvmprune.*"]) + ["tvmprune.schedules"],
    package_dir={"tvmprune.schedules": "schedules"},
    package_data={
        # bundle/: the runner's C++ sources and the support headers for building TVM's runtime
        "tvmprune": ["assets/*", "bundle/*.cc", "bundle/*.h", "bundle/cxx/*.md", "bundle/cxx/**/*.h"],
        "tvmprune.schedules": ["*/*.json", "*/*.md", "*.md"],
    },
)
