"""cronwarden: a self-hosted monitor for cron jobs and background jobs."""

__version__ = "0.1.0"
