"""The rerank service: cross-request batching (``engine``), metrics, the HTTP app (``app``, needs the serve extra)
and scale-out (``ray_app``). Nothing heavy is imported here."""
