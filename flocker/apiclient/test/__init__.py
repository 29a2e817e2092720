"""Tests of flocker.apiclient."""
