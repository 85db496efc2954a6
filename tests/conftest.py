"""Shared test set-up: Hypothesis runs derandomized in CI so a red build is reproducible."""

import os

from hypothesis import settings

# Locally, Hypothesis explores new examples on every run (and remembers failures in .hypothesis/);
# in CI (CI=true) it uses a fixed seed per test, so the same commit gives the same verdict.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
