"""Tests for the flocker command-line tool."""
