"""Tests for flocker.ca."""
