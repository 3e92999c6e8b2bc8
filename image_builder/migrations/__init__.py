"""Alembic migrations of the environment catalog (``upgrade head`` runs on start)."""
