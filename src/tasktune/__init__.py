"""tasktune: fine-tune, evaluate, compare and serve language models from one YAML file."""

__version__ = "0.1.0"
