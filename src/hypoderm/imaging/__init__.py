"""Images, below every other package: robust loading (`io`: decoding and its limits; `formats`: what a file is,
the allow-list, ImageLoadError; `files`: reading a file safely, walking a folder) and the colour rules (`colour`:
YCrCb skin rule, CIELAB, skin tone). Torch-free (numpy + Pillow) and importing nothing else of hypoderm, so that
`data` (datasets, audits), `inference` (the phone / server path) and `engine` (training) share one definition of each.
"""
