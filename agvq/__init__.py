"""AG-VQ-VAE: attention-guided VQ-VAE brain-tumour segmentation as a reproducible DVC pipeline."""

__version__ = "0.1.0"
