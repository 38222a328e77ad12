"""Toy extensions, one module per extension point: the examples of docs/extending.md. The config
files next to them register them and tests/test_extensions.py runs them through the CLI."""
