"""healthqa: data-quality and integrity auditing for regional health-information platforms."""

__version__ = "0.1.0"
