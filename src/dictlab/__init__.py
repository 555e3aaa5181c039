"""dictlab: sparse dictionary learning with ground truth."""

__version__ = "0.1.0"
