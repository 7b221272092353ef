"""Django's PostgreSQL backend with the outage handling of config.db.outage (ENGINE "config.db.backend")."""
