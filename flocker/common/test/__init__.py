"""Tests for flocker.common."""
