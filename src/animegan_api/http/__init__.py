"""HTTP: the FastAPI app and everything that speaks HTTP.

:func:`~.app.create_app`, the server with its drain (:mod:`.server`) and bounded
request heads (:mod:`.protocol`), middleware, security, typed dependencies,
the one error shape (:mod:`.errors` maps every refusal's code to its status),
response schemas, one router module per resource (:mod:`.routes`) and the
demo page (``static/``).
"""
