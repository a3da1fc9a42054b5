"""Photometric augmentation for grayscale steel under varying light, via albumentations.

Plugged into ultralytics' own pipeline through its ``augmentations`` training argument
(ultralytics wraps them in its ``Albumentations`` step, after mosaic and the affine
transforms), so there is one data loader. Only pixel-level transforms: boxes are
untouched, and flips and scale come from ultralytics itself.
"""

from __future__ import annotations


def steel_augmentations() -> list:
    """Transforms for strip inspection images: lighting, sensor noise, focus, contrast."""
    import albumentations as A

    return [
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.5),
        A.RandomGamma(gamma_limit=(70, 140), p=0.3),
        A.CLAHE(clip_limit=(1.0, 3.0), tile_grid_size=(8, 8), p=0.15),
        A.GaussNoise(std_range=(0.02, 0.08), p=0.25),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 5))], p=0.15),
        A.ImageCompression(quality_range=(60, 95), p=0.15),
    ]
