"""The standards library, custom Great Expectations expectations, suites as data, the runner."""

# the prefix of the error of a rule whose reference data could not be had (references.py): here, so
# that a report sorting rules by why they could not run loads no reference providers (pandas) for it
UNAVAILABLE = "参照数据不可用 reference unavailable"
