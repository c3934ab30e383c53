"""記録の表 (store tables): the peewee models of the files the seed describes.

Every model binds to `store.db.database_proxy`; nodes never build queries on these themselves but
go through store/identity.py, store/search.py and store/journal.py, which return dataclasses.
"""

from __future__ import annotations

import peewee

from store.db import database_proxy


class BaseModel(peewee.Model):
    """Binds every table to the process's store database (deferred until a node opens it)."""

    class Meta:
        database = database_proxy
        legacy_table_names = False
