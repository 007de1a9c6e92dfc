"""A TCP proxy the tests put between coterm and PostgreSQL, to make the database stop answering
without touching the shared server.

`cut()`: every open connection is dropped, and new ones are accepted but get no answer (the
client's bytes go nowhere) until `restore()`, which closes those silent ones too: clients
connect again and find the database back.
"""

import socket
import threading
from typing import Any


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.silent: list[socket.socket] = []
        self.is_cut = False
        self._stopped = False
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.is_cut:
                    self.silent.append(client)  # accepted, never answered
                    continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                _close(s)

    def cut(self) -> None:
        with self.lock:
            self.is_cut = True
            pairs, self.pairs = self.pairs, []
        for client, server in pairs:
            _close(client)
            _close(server)

    def restore(self) -> None:
        with self.lock:
            self.is_cut = False
            silent, self.silent = self.silent, []
        for s in silent:
            _close(s)

    def stop(self) -> None:
        self._stopped = True
        _close(self.listener)
        self.cut()
        self.restore()


def _close(s: Any) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
