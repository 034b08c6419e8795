"""Voice prompts: decoding, speech detection, speaker embeddings, quality
analysis, voice matching and its intelligibility gate. Pure Python; torch,
silero-vad, resemblyzer, pyworld and pocketsphinx are imported inside
functions, so importing this package is cheap."""
