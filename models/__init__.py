"""Mendline's contracts: pydantic models for every workflow, activity, update, signal
and query, the settings, and the SQLAlchemy schema.

This package imports nothing else of Mendline's, so any layer may depend on it.
"""
