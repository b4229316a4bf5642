"""Storage: one async database interface, a PostgreSQL and a SQLite backend, and the queries by subject."""
