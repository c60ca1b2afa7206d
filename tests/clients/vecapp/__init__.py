"""A Django app as a pgvector user writes one (tests/clients/test_django.py)."""
