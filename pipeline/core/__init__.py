"""The shared core of newsflow: settings, typed records, database schema and model runtime.

`pipeline`, `retraining` and `monitoring` all import from here; nothing here imports them.
"""
