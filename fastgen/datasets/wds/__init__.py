"""WebDataset (tar shard) loaders for large-model training; see fastgen/datasets/README.md (WebDataset section)."""
