"""Postprocessing of predicted label maps, each step chosen on the validation split (see agvq.config.postprocess)."""
