"""Anderson & Farrell (WACV 2022): random sigma-factor systems, colourised in HSV on a smooth
noise background, one random stamp per image, random windows and flips.

    synth-jax render --config configs/data/sigma_random.py --num 64 --out sigma.png

CPU (2 shared cores): the 1,000 systems are drawn in under a second and checked on the device
(every one rendered once); with the grid, about 25 s of CPU time (54 s wall on a busy machine).
224 px, 100k points per image. `:rejection` uses the rejection sampler (uniform on
the sigma constraint surface) instead of the sequential one. `:af` draws Anderson & Farrell's
look more closely: 8-bit OpenCV-HSV colour, a diamond-square background and a 3x3 Gaussian blur
with p = 0.5 (their single-fractal "multi-class" images; the default keeps the smooth-noise
background and a simpler HSV colouring).
"""

from synth_jax.fractals import data_config


def get_config(arg=None):
    config = data_config("sigma")
    if arg == "rejection":
        config.sigma_sampler = "rejection"
    if arg == "af":
        config.update(dict(colour="hsv8", background="plasma", blur=0.5))
    return config
