"""Measuring the pipelines: question sets, scorers, and the tables they print."""
