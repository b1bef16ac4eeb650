"""servebench: benchmark the ways of serving a model, every night and on demand."""

__version__ = "0.1.0"
