"""The honest floor of `make bench`: a bare Django hello app (no middleware, no database, none
of the project's code), served by the same gunicorn, worker class and count as the service."""
