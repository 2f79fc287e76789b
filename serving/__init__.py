"""Serving: what each caller gets of a prompt right now. The serving state every web process
holds (``state``: production versions and splitting rollouts, read from the registry's and the
rollouts' tables), the bucketing that splits callers (``bucketing``, pure), the answers of
resolve, render and snapshot (``answers``, free of any web framework) given by the WSGI fast path
(``fast_path``) and the DRF views (``api``), and the snapshot stream (``stream``,
``stream_asgi``)."""
