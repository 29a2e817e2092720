"""Tests for flocker.node."""
