"""Commands beyond training: sweeps and their plots, export, the Hub, model cards, webdataset shards."""
