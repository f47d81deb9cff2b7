"""Shared test code (imported as `helpers.<module>`; test/ is on sys.path under pytest) and the
child-process scripts some tests run."""
