"""Audio data: shard format, streaming reader, bad-input quarantine, synthetic corpus, importers."""
