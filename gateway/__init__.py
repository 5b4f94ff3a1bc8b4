"""Pieces of the gateway face (server.py): presenting results, metrics, the docs page."""
