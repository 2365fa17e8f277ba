"""Model layer: resolve names to local weights, load tokenizers and models."""
