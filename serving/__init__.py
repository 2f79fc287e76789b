"""Serving: what each caller gets of a prompt right now. The serving state every web process
holds (``state``: production versions, splitting rollouts and overrides, read from the
registry's, the rollouts' and this app's tables), the bucketing that splits callers
(``bucketing``, pure), the answers of resolve, render and snapshot (``answers``, free of any web
framework) given by the WSGI fast path (``fast_path``) and the DRF views (``api``), the snapshot
stream (``stream``, ``stream_asgi``), and overrides (``models``, ``services``, ``selectors``,
``api.overrides``, ``admin``) with the caller attributes they match (``attributes``)."""
