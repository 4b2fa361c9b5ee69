"""connc: a git-ops compiler for CI/CD service connections."""

__version__ = "0.1.0"
