"""Test support: running hubs and clients that act as a user would."""
