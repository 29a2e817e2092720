"""Tests for flocker.control."""
