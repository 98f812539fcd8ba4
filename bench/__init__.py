"""Benchmark of the token exchange next to a bare Flask endpoint: ``python -m bench``.

See ``bench/__main__.py`` for what is measured and how.
"""
