"""The modules behind ``benchmark.py`` and ``check.py`` (not part of the mmpatch package)."""
