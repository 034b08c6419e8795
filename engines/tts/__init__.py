"""Text-to-speech engines: one module per backend."""
