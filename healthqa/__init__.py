"""healthqa: data-quality and integrity auditing for regional health-information platforms.

The public API: what the README's examples and the benchmarks use, so that they do not depend on
where a function lives inside a room::

    import healthqa

    cfg = healthqa.load_config("healthqa-demo/healthqa.yml")
    run = healthqa.validate_adhoc(cfg, healthqa.ValidationRequest("mpi", tables=["person"]))
    result = healthqa.Deduplicator(healthqa.builtin_spec()).deduplicate(archives)

Names resolve on first use (PEP 562): importing ``healthqa`` stays cheap (Great Expectations and
pandas load only when a room is used), and the core, which every room imports, imports no room.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute)
_API = {
    # configuration, the canonical model and the audit store (the core)
    "load_config": ("healthqa.config", "load"),
    "Config": ("healthqa.config", "Config"),
    "AuditStore": ("healthqa.store", "AuditStore"),
    "HealthqaError": ("healthqa.errors", "HealthqaError"),
    # the synthetic Zhenhai platform
    "DemoOptions": ("healthqa.demo", "DemoOptions"),
    "generate_demo": ("healthqa.demo", "generate"),
    # validation
    "validate_frame": ("healthqa.expectations.runner", "validate_frame"),
    "ValidationRequest": ("healthqa.pipelines.validate", "ValidationRequest"),
    "validate_adhoc": ("healthqa.pipelines.validate", "validate_adhoc"),
    "validate_nightly": ("healthqa.pipelines.validate", "validate_nightly"),
    # duplicate archives
    "Deduplicator": ("healthqa.dedup.deduplicator", "Deduplicator"),
    "cluster_keys": ("healthqa.dedup.engine", "cluster_keys"),
    "normalise_archives": ("healthqa.dedup.normalise", "prepare"),
    "builtin_spec": ("healthqa.dedup.spec", "builtin"),
    "load_spec": ("healthqa.dedup.spec", "load"),
    "evaluate_dedup": ("healthqa.dedup.evaluate", "evaluate"),
    "read_truth": ("healthqa.dedup.evaluate", "read_truth"),
    "run_dedup": ("healthqa.pipelines.dedup", "run_dedup"),
    # the audit
    "run_nightly": ("healthqa.pipelines.nightly", "run_nightly"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    try:
        module, attr = _API[name]
    except KeyError:
        raise AttributeError(f"module 'healthqa' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
