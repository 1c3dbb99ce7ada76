"""Importable helpers for tests (functions that `python` tasks call, fixture builders)."""
