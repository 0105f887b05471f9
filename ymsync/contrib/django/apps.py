"""The app's start: ymsync's settings from Django's ``YMSYNC`` setting and the environment, checked
once, as Django loads its apps, so a bad value stops ``runserver``/gunicorn at start with one line
instead of failing the first request that pushes stock."""

from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ymsync.config.settings import SettingsError, configure


class YmsyncConfig(AppConfig):
    name = "ymsync.contrib.django"
    label = "ymsync"
    verbose_name = "ymsync (Yandex Market stock sync)"

    def ready(self) -> None:
        values = getattr(settings, "YMSYNC", None) or {}
        if not isinstance(values, dict):
            raise ImproperlyConfigured(f"YMSYNC must be a dict of ymsync settings, got {type(values).__name__}")
        try:
            configure(values)
        except SettingsError as exc:
            raise ImproperlyConfigured(f"ymsync: {exc}") from None
