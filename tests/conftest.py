"""Test configuration: deterministic hypothesis runs and a non-interactive matplotlib."""

import os

import matplotlib
from hypothesis import settings

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

# Same examples on every run, so the suite is reproducible bit for bit.
settings.register_profile("mcem", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("mcem")
