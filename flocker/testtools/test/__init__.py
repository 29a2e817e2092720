"""Tests for flocker.testtools and for the real parts it sets up."""
