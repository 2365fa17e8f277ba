"""Metrics per task kind: plain functions from gold and predicted values to numbers."""
