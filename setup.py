"""Everything else is in setup.cfg. This file exists for one thing setup.cfg cannot say:
the package list found automatically *plus* ``compere.sql``, which is the repository's
top-level ``sql/`` folder (the schema's one source) installed as ``compere/sql/``, so
wheels and sdists carry the migrations (see ``compere.storage.migrations.sql_root``).
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["compere", "compere.*"]), "compere.sql"])
