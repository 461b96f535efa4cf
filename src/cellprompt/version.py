"""The installed cellprompt version, in a module of its own so that every layer can read it
without importing the package root (which exposes the public API, the top layer)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cellprompt")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
