"""Thin Ray actor classes hosting runtime objects; ray.remote is applied in one place (factory.py)."""
