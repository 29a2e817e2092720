"""Flocker: Docker containers together with their data, across a cluster."""

__version__ = "2.0.0.dev0"
