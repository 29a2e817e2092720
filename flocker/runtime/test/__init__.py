"""Tests for flocker.runtime."""
