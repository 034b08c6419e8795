"""Talking-head video engines: portrait + speech -> lip-synced MP4."""
