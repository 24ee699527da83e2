"""Exposition: custom collectors over the runtime's snapshots, and the HTTP server."""
