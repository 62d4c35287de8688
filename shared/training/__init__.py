"""Fine-tuning as the product sees it: options, readiness, runs, their lifecycle, results.

``readiness`` and ``results`` are plain Python (the engine imports them); the modules
that read or write run rows need the database.
"""
