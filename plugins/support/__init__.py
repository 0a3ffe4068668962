"""Helpers shared by the built-in plugins; the core never imports them.

They use only xmodal's public API (`from xmodal import ...`), like any plugin, and a third-party
plugin may import them too (they are not part of that API and may change with xmodal):

- `alignment`: align feature files on item ids (duplicates, missing ids, order).
- `featurefiles`: read feature matrices and id lists from npy, npz, csv, parquet, safetensors.
- `images`: load images (raster and SVG) as RGB, fitted to a square.
- `linalg`: matrix products through torch, for metrics that run next to torch training.
- `word_ratings`: human word-similarity ratings: the known benchmarks and the one file parser
  that both the `ratings` dataset and the `similarity_correlation` metric use.
- `encoders`: run an `EncoderSpec`: resolve names, parse options, encode in batches, cache.
- `encoded_datasets`: feature sets of a dataset made by encoders (tuxpaint, ratings).
- `featurecache`: the on-disk cache of encoded feature matrices.
"""
