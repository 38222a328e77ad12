"""Plain sequential NumPy references of the device renderers, written for clarity: the tests
check the renderers against them and `synth-jax bench render` times them beside the device.
Training never imports them."""
