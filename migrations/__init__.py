"""Alembic migrations of Mendline's database, applied on start and by ``mendline db upgrade``."""
