"""The package version, in one place (read by the package and written into saved results)."""

__version__ = "0.1.0"
