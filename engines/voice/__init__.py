"""Voice prompts: decoding, speech detection, speaker embeddings, quality
analysis and voice matching. Pure Python; torch, silero-vad, resemblyzer and
pyworld are imported inside functions, so importing this package is cheap."""
