"""Ahead of time: what a config's training step needs on a target (a TPU slice by name, or the
local devices), learnt by compiling it there without running it: memory per chip against the
chip's HBM, the collectives with their bytes, model FLOPs and a roofline step time."""
