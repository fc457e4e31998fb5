"""File I/O: NIfTI reading/writing, case discovery, validation, atomic writes."""
