"""Everything else is in setup.cfg. This file exists for one thing setup.cfg cannot say:
the package list found automatically *plus* ``compere.sql``, which is the repository's
top-level ``sql/`` folder (the schema's one source) installed as ``compere/sql/``, so
wheels and sdists carry the migrations (see ``compere.storage.migrations.sql_root``).

Folders that hold only data (``static/``, ``data/``, the two ``sql/`` dialects) are
listed as namespace packages so setuptools knows they are meant to ship.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["compere", "compere.*"], exclude=["compere.sql*"]),
        "compere.sql",
        "compere.sql.postgresql",
        "compere.sql.sqlite",
    ]
)
