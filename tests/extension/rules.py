"""A researcher's own eviction rule, outside the package (tests/test_extending.py, README
"Extending"): pop the newest element, so a memory keeps the first K latents it saw."""


def evict_newest(sums, generator):
    """sums (n,): eq. (7) similarity degrees in insertion order; returns the index to pop."""
    return sums.shape[0] - 1
