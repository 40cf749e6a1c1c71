"""A TCP proxy on 127.0.0.1 that drops connections mid-response: real dropped connections for retry tests."""

from __future__ import annotations

import socket
import socketserver
import threading


class FaultProxy:
    """Forwards to `target` (host, port). The first `faults` connections whose responses exceed `cut_after` bytes
    are closed after relaying exactly `cut_after` response bytes (the client sees a connection reset mid-body)."""

    def __init__(self, target: tuple[str, int], cut_after: int, faults: int):
        self.target, self.cut_after = target, cut_after
        self.faults_left, self.cuts = faults, 0
        self.refuse = False  # True: every new connection is closed at once (an endpoint that went away)
        self.lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                proxy.relay(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def relay(self, client: socket.socket) -> None:
        if self.refuse:
            client.close()
            return
        upstream = socket.create_connection(self.target)
        done = threading.Event()

        def forward_requests():
            try:
                while data := client.recv(65536):
                    upstream.sendall(data)
            except OSError:
                pass
            done.set()

        threading.Thread(target=forward_requests, daemon=True).start()
        sent, armed = 0, None
        try:
            while data := upstream.recv(65536):
                if armed is None and sent + len(data) > self.cut_after:
                    with self.lock:
                        armed = self.faults_left > 0
                        self.faults_left -= int(armed)
                if armed:
                    client.sendall(data[: self.cut_after - sent])
                    with self.lock:
                        self.cuts += 1
                    break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
