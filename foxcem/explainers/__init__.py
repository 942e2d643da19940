"""Captum-backed explainers (one module per method)."""
