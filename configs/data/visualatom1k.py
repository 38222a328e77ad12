"""VisualAtom-1k (Takashima et al., CVPR 2023): 1,000 categories x 1,000 instances = 1M images of
orbits pushed outward by two integer-frequency sine waves plus per-vertex Perlin white noise,
with the authors' published ranges (make_VisualAtom.sh): V ~ U{200..1000} vertices,
K ~ U{1..200} orbits, n1, n2 ~ U{0..20}, noise c ~ U(0, 4), line_width ~ U(0, 0.1),
r0 ~ U{10..60} px@512, oval stretches U(1, 2); 1-px grey strokes on a 512 canvas, resized.

    synth-jax render --config configs/data/visualatom1k.py --num 64 --out visualatom.png
    synth-jax export --config configs/data/visualatom1k.py --out va1k --format tfds

Hardware: anything; a GPU for pre-training. Runtime: the category table builds in about 0.3 s;
on 2 shared CPU cores the renderer draws 224-px images at ~7 images/s (BENCHMARKS.md: all
1M images this way would take about two days; `synth-jax bench suite` measures an H100/H200,
not yet run), which is why training renders them inside the step on the accelerator.
Published (ViT-Tiny pre-trained on VisualAtom-1k, DeiT recipe, fine-tuned): C10 97.6, C100 84.9,
Cars 88.8, Flowers 98.9, VOC12 82.0, P30 81.2, IN100 90.3, average 89.1 (FractalDB-1k 87.1,
scratch 62.6); ImageNet-1k top-1 74.2 (ViT-T) and 82.3 (ViT-B).
Variants: `:small` (16 categories, 64 px, 128-px canvas: a look in seconds).
"""

from synth_jax.config import config_args
from synth_jax.fractals import data_config


def get_config(arg=None):
    small = config_args(arg, small=False).small
    config = data_config("visualatom", num_classes=1000, images_per_category=1000)
    if small:
        config.update(dict(num_classes=16, image_size=64, canvas_size=128, stroke_samples=1 << 14))
    return config
