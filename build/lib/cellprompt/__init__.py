"""cellprompt: benchmark and evolve the prompts of single-cell analysis agents."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cellprompt")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
