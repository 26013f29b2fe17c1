"""Data layer: robust image loading, dataset index, group-aware splits and the dataset audit."""
