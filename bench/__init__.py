"""Benchmarks: `python -m bench.<name>`, each with an `async def run(...) -> dict`."""
