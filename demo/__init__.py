"""The synthetic Zhenhai platform: three SQLite stores with vendor-style schemas, defects and
duplicate archives injected at configured rates, and the ground truth written beside them."""

from .platform import DemoOptions, generate

__all__ = ["DemoOptions", "generate"]
