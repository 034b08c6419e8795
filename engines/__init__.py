"""Model runtime for Mynah: pure Python, never imports Django.

Engines receive frozen dataclasses and file paths and return the same. Heavy
libraries (onnxruntime, torch, ctypes-loaded espeak) are imported lazily inside
``load()`` so that importing this package stays cheap in the web process.
"""
