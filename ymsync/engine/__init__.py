"""The stock engine. Importing it registers every target kind (group_target.py registers ``g``)."""

from ymsync.engine import group_target as _group_target  # noqa: F401  (registers the "g" kind)
