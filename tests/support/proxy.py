"""A TCP proxy between a client and Redis that can go silent, the way a NAT, a load
balancer or a half-dead connection does: bytes stop flowing and nobody is told."""

from __future__ import annotations

import select
import socket
import threading


class _Pipe:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.subscriber = False  # has sent SUBSCRIBE: a pub/sub connection
        self.frozen = False

    def close(self) -> None:
        for s in (self.client, self.upstream):
            try:
                s.close()
            except OSError:
                pass


class SilentProxy:
    """Forwards 127.0.0.1:<port> to ``target``.

    Parameters:
      target: (host, port) of the real server.

    :meth:`silence_subscriptions` stops forwarding, in both directions and without closing
    anything, on every connection that has subscribed; new connections still work.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._pipes: list[_Pipe] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> SilentProxy:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for pipe in self._pipes:
                pipe.close()

    def silence_subscriptions(self) -> int:
        """Freezes every subscribed connection; returns how many."""
        with self._lock:
            frozen = [p for p in self._pipes if p.subscriber and not p.frozen]
            for p in frozen:
                p.frozen = True
        return len(frozen)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            pipe = _Pipe(client, upstream)
            with self._lock:
                self._pipes.append(pipe)
            threading.Thread(target=self._forward, args=(pipe,), daemon=True).start()

    def _forward(self, pipe: _Pipe) -> None:
        peers = {pipe.client: pipe.upstream, pipe.upstream: pipe.client}
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select(list(peers), [], [], 0.05)
                if pipe.frozen:
                    continue  # silent: read nothing, forward nothing, close nothing
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is pipe.client and b"SUBSCRIBE" in data.upper():
                        pipe.subscriber = True
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            if not pipe.frozen:
                pipe.close()
