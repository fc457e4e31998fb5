"""Diagnostics of trained models on the validation split (where the two-stage model loses, and why)."""
