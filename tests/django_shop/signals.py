"""The README's recipe, as a shop writes it: saves and deletes push when the transaction commits."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from ymsync.contrib.django import push_on_commit

from .models import Product

CAMPAIGN = 1001


@receiver(post_save, sender=Product)
def stock_saved(sender, instance, **kwargs):
    push_on_commit(CAMPAIGN, [{"sku": instance.sku, "count": instance.stock}])


@receiver(post_delete, sender=Product)
def product_deleted(sender, instance, **kwargs):
    push_on_commit(CAMPAIGN, [{"sku": instance.sku, "count": 0}])
