"""divdistill: diversity-driven generative dataset distillation with self-adaptive memory."""

__version__ = "0.1.0"
