"""A fault-injecting TCP proxy between Kafka clients and a broker.

It reads the Kafka framing (a 4-byte length, then the request header ``api_key``,
``api_version``, ``correlation_id``), remembers which request each correlation id
was, and can rewrite the error code of a response. The fault used here reproduces
the stuck group seen on the embedded broker: every SyncGroup on a connection opened
while the fault was armed answers error 27 (REBALANCE_IN_PROGRESS), so that member
rejoins forever and never gets a partition; connections opened later (a fresh
member) pass untouched. The broker must advertise the proxy's address, or clients
would bypass it after the first metadata answer.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

SYNC_GROUP = 14
REBALANCE_IN_PROGRESS = 27
#: first SyncGroup version with the flexible (tagged-field) response header
SYNC_GROUP_FLEXIBLE = 4


def _read_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(sock: socket.socket) -> bytes | None:
    head = _read_exact(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    body = _read_exact(sock, size)
    return None if body is None else head + body


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def sync_group_error_offset(frame: bytes, version: int) -> int:
    """Where the error code sits in a SyncGroup response frame (length prefix included)."""
    pos = 8  # length, correlation id
    if version >= SYNC_GROUP_FLEXIBLE:  # response header v1: tagged fields
        count, pos = _varint(frame, pos)
        for _ in range(count):
            _, pos = _varint(frame, pos)
            size, pos = _varint(frame, pos)
            pos += size
    if version >= 1:
        pos += 4  # throttle_time_ms
    return pos


@dataclass
class _Connection:
    client: socket.socket
    upstream: socket.socket
    stuck: bool
    requests: dict[int, tuple[int, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class KafkaFaultProxy:
    """Listen on a loopback port and forward every connection to ``upstream``."""

    def __init__(self, upstream: tuple[str, int], port: int) -> None:
        self.upstream = upstream
        self.port = port
        self.armed = False
        #: SyncGroup answers rewritten to error 27
        self.sync_groups_failed = 0
        self.sync_groups_passed = 0
        self._connections: list[_Connection] = []
        self._server = socket.create_server(("127.0.0.1", port))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="kafka-proxy")

    def start(self) -> KafkaFaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._server.close()
        for conn in list(self._connections):
            for sock in (conn.client, conn.upstream):
                with contextlib.suppress(OSError):
                    sock.close()
        self._thread.join(5)

    def arm_stuck_sync_group(self) -> None:
        """From now on, connections opened get error 27 on every SyncGroup, for good."""
        self.armed = True

    def disarm(self) -> None:
        """Connections opened from now on pass; those opened while armed stay stuck."""
        self.armed = False

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            conn = _Connection(client, upstream, stuck=self.armed)
            self._connections.append(conn)
            threading.Thread(target=self._requests, args=(conn,), daemon=True).start()
            threading.Thread(target=self._responses, args=(conn,), daemon=True).start()

    def _requests(self, conn: _Connection) -> None:
        try:
            while (frame := _read_frame(conn.client)) is not None:
                api_key, version, correlation = struct.unpack(">hhi", frame[4:12])
                with conn.lock:
                    conn.requests[correlation] = (api_key, version)
                conn.upstream.sendall(frame)
        except OSError:
            pass
        finally:
            self._close(conn)

    def _responses(self, conn: _Connection) -> None:
        try:
            while (frame := _read_frame(conn.upstream)) is not None:
                (correlation,) = struct.unpack(">i", frame[4:8])
                with conn.lock:
                    api_key, version = conn.requests.pop(correlation, (-1, -1))
                if api_key == SYNC_GROUP:
                    if conn.stuck:
                        pos = sync_group_error_offset(frame, version)
                        frame = (
                            frame[:pos]
                            + struct.pack(">h", REBALANCE_IN_PROGRESS)
                            + frame[pos + 2 :]
                        )
                        self.sync_groups_failed += 1
                    else:
                        self.sync_groups_passed += 1
                conn.client.sendall(frame)
        except OSError:
            pass
        finally:
            self._close(conn)

    def _close(self, conn: _Connection) -> None:
        for sock in (conn.client, conn.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
