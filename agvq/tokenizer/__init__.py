"""The MRI tokenizer (seeds 001-003): an image VQ-VAE with one codebook common to every sequence."""
