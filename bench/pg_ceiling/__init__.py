"""The PostgreSQL ceiling: how many votes per second the database alone takes (pgbench)."""
