"""Test-only helpers: in-process workers and webhook receivers, fake model
servers (CosyVoice, ComfyUI), the browser session. Code the benchmarks share
with the tests lives in the top-level ``harness`` package."""
