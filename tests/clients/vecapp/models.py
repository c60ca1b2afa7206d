from django.db import models
from pgvector.django import HnswIndex, VectorField


class Item(models.Model):
    content = models.TextField()
    category = models.IntegerField(null=True)
    embedding = VectorField(dimensions=3, null=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "vecapp"
        indexes = [
            HnswIndex(
                name="item_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_l2_ops"],
            )
        ]


class Label(models.Model):
    """A model without a vector: Django inserts several of them at once
    through UNNEST of one array per column."""

    name = models.CharField(max_length=50, unique=True)
    weight = models.IntegerField(default=1)

    class Meta:
        app_label = "vecapp"
