"""Training and evaluation engine: decoded cache, datasets, train / evaluate / cv, metrics, calibration.

Import the sub-modules directly (`hypoderm.engine.train`, ...); this package imports nothing heavy.
"""
