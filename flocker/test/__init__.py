"""Tests of the project as a whole: its documentation."""
