"""Prefect tasks: thin typed wrappers over lorasoup_core."""
