"""Prefect tasks: thin typed wrappers over lorasoup_core, with retries and backoff on I/O only."""
