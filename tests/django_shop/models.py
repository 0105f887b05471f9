"""A shop's product table, as a Django shop has one (tests/integration/test_django.py)."""

from django.db import models


class Product(models.Model):
    sku = models.CharField(max_length=80, unique=True)
    stock = models.IntegerField(default=0)
    warehouse = models.IntegerField(default=0)

    class Meta:
        app_label = "django_shop"
