"""Tests for :mod:`flocker.transport`."""
