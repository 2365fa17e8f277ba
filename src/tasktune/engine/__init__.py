"""Training engine: transformers.Trainer wiring plus the callbacks tasktune adds to it."""
