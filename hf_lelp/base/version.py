"""The installed distribution's version, from its metadata (pyproject.toml holds the one number)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hf-lelp")
except PackageNotFoundError:  # a checkout on sys.path that was never installed
    __version__ = "0+unknown"
