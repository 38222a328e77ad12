"""The formula families, one module each (synth_jax.fractals.family says what a family module
defines): fractaldb, sigma, onepfrac, one_image, multi_instance, ofdb, visualatom, rcdb,
dead_leaves, spectrum, and mixture (a weighted mixture of the others)."""
