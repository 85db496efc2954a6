"""Unified customer view pipeline."""
