"""Robustness study (seed 002's claim): seeded perturbations of the raw MRI, predictions under each, drops."""
