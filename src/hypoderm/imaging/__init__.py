"""Images, below every other package: robust loading (`io`) and the colour rules (`colour`: YCrCb skin rule,
CIELAB, skin tone). Torch-free (numpy + Pillow) and importing nothing else of hypoderm, so that `data` (datasets,
audits), `inference` (the phone / server path) and `engine` (training) share one definition of each.
"""
