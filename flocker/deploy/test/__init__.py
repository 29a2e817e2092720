"""Tests for flocker-deploy."""
