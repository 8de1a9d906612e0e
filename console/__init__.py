"""The web console (``healthqa serve``): the data steward's duplicate review, the QC manager's
dashboard, the engineer's ad-hoc validation, accounts. FastAPI with Jinja2 templates in Chinese, htmx
vendored in ``static/`` (nothing from a CDN); the audit store behind it, the MPI read read-only."""
