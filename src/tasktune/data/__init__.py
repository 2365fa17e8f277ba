"""Data layer: readers, column mapping, splits, validation and inspection."""
