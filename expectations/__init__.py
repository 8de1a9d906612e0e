"""The standards library, custom Great Expectations expectations, suites as data, the runner."""
