"""Realtime (WebSocket) sessions, the sans-IO parts: what the relay in ``trigate.api.realtime`` needs to
know about the OpenAI Realtime protocol without owning a socket.

- ``settings``: the ``realtime`` config section (limits).
- ``subprotocols``: the browser auth form carried in ``Sec-WebSocket-Protocol``.
- ``usage``: token accounting tapped from server events.
- ``hooks``: server-side policies applied to client events (forward / rewrite / reject).
- ``closing``: which close code and reason each side gets when a session ends.
"""
