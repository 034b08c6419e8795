"""Shared audio I/O and DSP helpers for engines (numpy + PyAV, no Django)."""
