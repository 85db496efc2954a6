"""Local alert receivers on 127.0.0.1 for notifier tests: a minimal SMTP server and an HTTP
endpoint, each keeping what it received. No network beyond the loopback interface."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_string, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO, MAIL, RCPT, DATA, QUIT."""

    def handle(self) -> None:
        self._reply("220 127.0.0.1 test receiver")
        lines: list[bytes] | None = None
        while line := self.rfile.readline():
            if lines is not None:  # inside DATA
                if line.rstrip(b"\r\n") == b".":
                    self.server.messages.append(  # type: ignore[attr-defined]
                        message_from_string(b"".join(lines).decode("utf-8", "replace"),
                                        policy=policy.default))
                    lines = None
                    self._reply("250 queued")
                else:
                    lines.append(line[1:] if line.startswith(b"..") else line)
                continue
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self._reply("250 127.0.0.1")
            elif verb == b"DATA":
                lines = []
                self._reply("354 end with <CR><LF>.<CR><LF>")
            elif verb == b"QUIT":
                self._reply("221 bye")
                return
            else:  # MAIL FROM, RCPT TO, RSET, NOOP
                self._reply("250 ok")

    def _reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()


class _SMTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SMTPHandler)
        self.messages: list[Message] = []


class _WebhookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.posts.append({"path": self.path,  # type: ignore[attr-defined]
                                  "json": json.loads(body or b"null")})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@contextmanager
def smtp_receiver() -> Iterator[_SMTPServer]:
    server = _SMTPServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def webhook_receiver() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebhookHandler)
    server.posts = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def airflow_connections(smtp_port: int, webhook_port: int) -> dict[str, str]:
    """AIRFLOW_CONN_* variables pointing the alert channels at the receivers."""
    return {
        "AIRFLOW_CONN_UCV_SMTP": json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
            "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0,
                      "timeout": 10}}),
        "AIRFLOW_CONN_UCV_WEBHOOK": json.dumps({
            "conn_type": "http", "host": "127.0.0.1", "port": webhook_port, "schema": "http",
            "extra": {"endpoint": "/alerts/ucv"}}),
    }
