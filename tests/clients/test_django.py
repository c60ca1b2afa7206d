"""Django's ORM with pgvector-python's Django support, unchanged, against
the Postgres front end: `migrate` creates the migrations table and the
model's table with its HNSW index, objects are created one by one and in
bulk (one of them before it has an embedding), queried by L2 and cosine
distance with filters on other columns, annotated with distances,
updated, deleted, and a rolled-back `transaction.atomic` block leaves
nothing. Models related by `ForeignKey` (CASCADE and SET_NULL) get their
foreign keys from `migrate`, are joined, filtered across the relation
and deleted as Django deletes them, and a key Django is asked to break
is an `IntegrityError`. `django.contrib.auth` and `contenttypes` migrate
(unique constraints over two columns, `ALTER COLUMN … TYPE varchar(n)`,
`DROP NOT NULL`) and their users, groups and permissions work. Expected
neighbours are computed here; the rows are read back over REST."""

import json
import math
import os
import urllib.request

import django
import pytest


def rest(path, body=None):
    url = "http://{}:{}{}".format(
        os.environ["VALORI_PG_HOST"], os.environ["VALORI_REST_PORT"], path
    )
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def orm():
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DATABASES={
                "default": {
                    "ENGINE": "django.db.backends.postgresql",
                    "HOST": os.environ["VALORI_PG_HOST"],
                    "PORT": os.environ["VALORI_PG_PORT"],
                    "NAME": "valori",
                    "USER": "django",
                }
            },
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "vecapp"],
            USE_TZ=True,
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        )
        django.setup()
    from django.core.management import call_command
    from django.db import connection

    with connection.cursor() as cur:
        # Referencing tables first.
        for table in [
            "auth_user_user_permissions",
            "auth_user_groups",
            "auth_group_permissions",
            "auth_user",
            "auth_group",
            "auth_permission",
            "django_content_type",
            "vecapp_chunk",
            "vecapp_document",
            "vecapp_item",
            "vecapp_label",
            "django_migrations",
        ]:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
    call_command("migrate", verbosity=0)
    yield
    connection.close()


VECTORS = {
    "a": ([1, 2, 3], 1),
    "b": ([4, 5, 6], 1),
    "c": ([1, 1, 1], 2),
    "d": ([3, 1, 2], 2),
    "e": ([0, 0, 1], 1),
}


def l2(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return 1 - dot / math.sqrt(sum(x * x for x in a)) / math.sqrt(sum(y * y for y in b))


def test_migrate_create_query_update_delete(orm):
    from django.db import connection, transaction
    from pgvector.django import CosineDistance, L2Distance
    from vecapp.models import Item

    # migrate recorded its migrations and made the tables.
    with connection.cursor() as cur:
        cur.execute("SELECT app, name FROM django_migrations WHERE app = 'vecapp' ORDER BY id")
        assert cur.fetchall() == [("vecapp", "0001_initial"), ("vecapp", "0002_document_chunk")]
    assert "vecapp_item" in connection.introspection.table_names()

    Item.objects.create(content="a", category=1, embedding=VECTORS["a"][0])
    Item.objects.bulk_create(
        [Item(content=k, category=c, embedding=v) for k, (v, c) in VECTORS.items() if k != "a"]
    )
    later = Item.objects.create(content="no embedding yet", category=1)
    assert later.pk is not None and later.embedding is None
    assert Item.objects.count() == 6

    query = [3, 1, 2]
    with_vectors = sorted(VECTORS, key=lambda k: (l2(VECTORS[k][0], query), k))
    nearest = list(Item.objects.order_by(L2Distance("embedding", query))[:3])
    assert [i.content for i in nearest] == with_vectors[:3]
    assert [float(x) for x in nearest[0].embedding] == VECTORS[with_vectors[0]][0]

    # A filter on another column, cosine distance, and the distance as a value.
    ones = sorted(
        (k for k in VECTORS if VECTORS[k][1] == 1), key=lambda k: (cosine(VECTORS[k][0], query), k)
    )
    got = list(
        Item.objects.filter(category=1)
        .annotate(distance=CosineDistance("embedding", query))
        .order_by("distance")[:2]
    )
    assert [i.content for i in got] == ones[:2]
    for item in got:
        # The cosine distance floors the integer square roots of the
        # norms (docs/format.md, 1.2): within 1e-5 of the float value.
        assert math.isclose(item.distance, cosine(VECTORS[item.content][0], query), abs_tol=1e-5)
    close = Item.objects.alias(distance=L2Distance("embedding", query)).filter(distance__lt=2.5)
    assert sorted(i.content for i in close) == sorted(
        k for k in VECTORS if l2(VECTORS[k][0], query) < 2.5
    )

    # The row without an embedding gets one; a rolled-back block leaves nothing.
    Item.objects.filter(pk=later.pk).update(embedding=[3, 1, 2])
    # Now two rows are at distance 0 from the query: "d" and this one,
    # in id order.
    first_two = [i.pk for i in Item.objects.order_by(L2Distance("embedding", query))[:2]]
    assert first_two == sorted([Item.objects.get(content="d").pk, later.pk])
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            Item.objects.create(content="gone", category=9, embedding=[9, 9, 9])
            Item.objects.filter(content="a").delete()
            raise RuntimeError("roll back")
    assert Item.objects.count() == 6
    assert not Item.objects.filter(category=9).exists()
    Item.objects.filter(content="b").delete()
    assert Item.objects.count() == 5

    # A second front end sees the same rows.
    answer = rest("/v1/sql", {"query": "SELECT content FROM vecapp_item ORDER BY id"})
    assert [r[0] for r in answer["rows"]] == ["a", "c", "d", "e", "no embedding yet"]


def test_bulk_create_through_unnest(orm):
    """Several objects of a model without a vector, created in one
    statement (Django sends one array per column through UNNEST), get
    their ids back in order; the unique name is enforced."""
    from django.db import IntegrityError, transaction
    from vecapp.models import Label

    made = Label.objects.bulk_create([Label(name=n, weight=w) for n, w in [("x", 3), ("y", 1), ("z", 2)]])
    assert [m.pk for m in made] == sorted(m.pk for m in made)
    assert list(Label.objects.order_by("-weight").values_list("name", flat=True)) == ["x", "z", "y"]
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            Label.objects.create(name="x")
    assert Label.objects.count() == 3
    answer = rest("/v1/sql", {"query": "SELECT name, weight FROM vecapp_label ORDER BY name"})
    assert answer["rows"] == [["x", 3], ["y", 1], ["z", 2]]


def test_foreign_keys(orm):
    """`migrate` gives Chunk its two foreign keys (Django's deferred
    `ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY … DEFERRABLE INITIALLY
    DEFERRED`), listed in pg_constraint; chunks are found through the
    relation (a join on the document's title) in L2 order computed here;
    a chunk of a document that does not exist is an IntegrityError with
    nothing written; deleting a label sets its chunks' label to NULL and
    deleting a document deletes its chunks, as REST reads back."""
    from django.db import IntegrityError, connection, transaction
    from pgvector.django import L2Distance
    from vecapp.models import Chunk, Document, Label

    with connection.cursor() as cur:
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid = 'vecapp_chunk'::regclass ORDER BY conname"
        )
        keys = [row[1] for row in cur.fetchall()]
    assert keys == [
        "FOREIGN KEY (document_id) REFERENCES vecapp_document(id)",
        "FOREIGN KEY (label_id) REFERENCES vecapp_label(id)",
    ]

    label = Label.objects.create(name="fk-label")
    guide = Document.objects.create(title="guide")
    notes = Document.objects.create(title="notes")
    vectors = {
        "g1": (guide, [1, 0, 0]),
        "g2": (guide, [0, 1, 0]),
        "g3": (guide, [2, 2, 2]),
        "n1": (notes, [1, 0, 0]),
    }
    for text, (doc, v) in vectors.items():
        Chunk.objects.create(document=doc, label=label, text=text, embedding=v)

    query = [1, 1, 0]
    expected = sorted(
        (t for t, (d, _) in vectors.items() if d == guide), key=lambda t: l2(vectors[t][1], query)
    )
    found = (
        Chunk.objects.select_related("document")
        .filter(document__title="guide")
        .order_by(L2Distance("embedding", query))
    )
    assert [c.text for c in found] == expected
    assert all(c.document.title == "guide" for c in found)
    assert guide.chunks.count() == 3

    with pytest.raises(IntegrityError):
        with transaction.atomic():
            Chunk.objects.create(document_id=10**9, text="orphan", embedding=[0, 0, 1])
    assert not Chunk.objects.filter(text="orphan").exists()

    label.delete()
    assert list(Chunk.objects.filter(label__isnull=True).order_by("text").values_list("text", flat=True)) == [
        "g1",
        "g2",
        "g3",
        "n1",
    ]
    guide.delete()
    answer = rest("/v1/sql", {"query": "SELECT text FROM vecapp_chunk ORDER BY text"})
    assert answer["rows"] == [["n1"]]


def test_contrib_auth(orm):
    """`migrate` of contenttypes and auth leaves Django's own tables and
    the four default permissions of each of the eight models (contenttypes'
    ContentType; auth's Permission, Group and User; vecapp's four); a user
    with a hashed password authenticates, joins a group that holds a
    permission and so has it; a second permission with the same content
    type and codename breaks the unique constraint over the two columns
    (IntegrityError, nothing written); deleting the user deletes its
    memberships, as REST reads back."""
    from django.contrib.auth import authenticate
    from django.contrib.auth.models import Group, Permission, User
    from django.contrib.contenttypes.models import ContentType
    from django.db import IntegrityError, transaction

    assert ContentType.objects.count() == 8
    assert Permission.objects.count() == 8 * 4
    user = User.objects.create_user("ann", "ann@example.com", "s3cret")
    assert authenticate(username="ann", password="s3cret") == user
    assert authenticate(username="ann", password="wrong") is None
    editors = Group.objects.create(name="editors")
    change_item = Permission.objects.get(codename="change_item")
    editors.permissions.add(change_item)
    user.groups.add(editors)
    # A fresh object: Django caches permissions per instance.
    assert User.objects.get(pk=user.pk).has_perm("vecapp.change_item")
    assert not User.objects.get(pk=user.pk).has_perm("vecapp.delete_item")
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            Permission.objects.create(
                name="again", content_type=change_item.content_type, codename="change_item"
            )
    assert Permission.objects.count() == 8 * 4
    user.delete()
    answer = rest("/v1/sql", {"query": "SELECT count(*) FROM auth_user_groups"})
    assert answer["rows"] == [[0]]
    assert Group.objects.filter(name="editors").exists()
