"""Evaluation: metrics, ROC curves with bootstrap CI bands, DeLong tests, reader comparison, demographics."""
