"""synth_jax: formula-driven pre-training of vision models in JAX, and its transfer to real data.

Data flows one way through the package:
  fractals (formula parameters -> images on the device) -> models + train (pre-training,
  checkpoints) -> data + transfer (fine-tuning on real data, results rows) -> scaling (fitted laws)
  -> experiments (sweeps, reports).
"""

__version__ = "0.1.0"
