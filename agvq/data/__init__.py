"""Data: synthetic phantoms, preprocessing, splits and training datasets."""
