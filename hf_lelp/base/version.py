"""The distribution's name (also the command's) and its installed version, from its metadata (pyproject.toml holds
the one number)."""

from importlib.metadata import PackageNotFoundError, version

PROG = "hf-lelp"

try:
    __version__ = version(PROG)
except PackageNotFoundError:  # a checkout on sys.path that was never installed
    __version__ = "0+unknown"
