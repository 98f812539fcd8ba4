"""A WSGI server on 127.0.0.1 for the HTTP-level fakes of SaaS upstreams: started on entering
the ``with`` block, stopped and joined on leaving it."""

from __future__ import annotations

import threading
from typing import Any, Self

from werkzeug.serving import make_server


class LoopbackServer:
    """Subclasses define ``_answer``, a WSGI application (``@Request.application``)."""

    _answer: Any
    _server: Any = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._server = make_server("127.0.0.1", 0, self._answer, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"
