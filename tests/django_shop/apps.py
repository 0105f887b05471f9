from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "tests.django_shop"
    label = "django_shop"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the receivers)
