"""Local web apps of gsscreen (served on this machine only, no CDN, nothing downloaded).

- ``gsscreen.web.readers_app``: the reader study (physicians call GS / no GS on photos shown for a fixed time),
  started with ``gsscreen readers serve``.
"""
