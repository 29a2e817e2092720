"""Tests of the Docker volume plugin."""
