"""Storage: one async database interface, a PostgreSQL and a SQLite backend, the queries."""
