"""One connection, one request: a byte carrying the client's stdin, stdout and stderr
(SCM_RIGHTS), then a 4-byte length and a JSON object (``{"argv", "cwd", "env"}`` to run a
command, ``{"status": true}`` to ask what the daemon holds). Answers are JSON lines:
``{"pid"}`` at once (the child running the command), ``{"exit"}`` or ``{"signal"}`` at its end,
``{"error"}`` when nothing was run. Standard library only (the client uses it).
"""

from __future__ import annotations

import json
import socket

MAX_REQUEST = 16 << 20  # bytes: a command line, a folder and an environment
STDIO = 3


def send_request(sock: socket.socket, request: dict, fds: list[int]) -> None:
    body = json.dumps(request).encode("utf-8", "surrogateescape")
    if fds:
        socket.send_fds(sock, [b"R"], fds)
    else:
        sock.sendall(b"R")
    sock.sendall(len(body).to_bytes(4, "big") + body)


def receive_request(sock: socket.socket) -> tuple[dict, list[int]]:
    """The request and the fds that came with it (the caller closes them); ValueError when it is
    not one."""
    first, fds, _flags, _addr = socket.recv_fds(sock, 1, STDIO)
    if first != b"R":
        for fd in fds:
            _close(fd)
        raise ValueError("not a dorc daemon request")
    try:
        size = int.from_bytes(_exactly(sock, 4), "big")
        if size > MAX_REQUEST:
            raise ValueError("request too large")
        return json.loads(_exactly(sock, size).decode("utf-8", "surrogateescape")), fds
    except (ValueError, OSError):
        for fd in fds:
            _close(fd)
        raise


def answer(sock: socket.socket, message: dict) -> None:
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        pass  # the client is gone


class Answers:
    """The daemon's answers, one JSON object at a time; None once it closed the connection."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buffer = b""

    def next(self) -> dict | None:
        while b"\n" not in self._buffer:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return None
            if not data:
                return None
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError:
            return None


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        data = sock.recv(min(size - got, 1 << 20))
        if not data:
            raise ValueError("request cut short")
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def _close(fd: int) -> None:
    import os

    try:
        os.close(fd)
    except OSError:
        pass
