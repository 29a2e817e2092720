"""Test helpers: fixtures for real ZFS pools, Docker and local clusters."""
