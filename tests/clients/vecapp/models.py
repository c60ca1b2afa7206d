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


class Document(models.Model):
    title = models.CharField(max_length=100)

    class Meta:
        app_label = "vecapp"


class Chunk(models.Model):
    """Chunks of a document, as a retrieval app keeps them: a foreign key
    to their document (deleted with it) and an optional one to a label
    (set to NULL when the label goes)."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    label = models.ForeignKey(Label, null=True, on_delete=models.SET_NULL)
    text = models.TextField()
    embedding = VectorField(dimensions=3)

    class Meta:
        app_label = "vecapp"
