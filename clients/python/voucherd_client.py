"""A voucherd client in Python: QUIC with mutual TLS, the JSON encoding.

Written from docs/protocol.md alone, as a gateway team would: ALPN
`voucherd-json/1`, one bidirectional stream per frame, a frame is a u32
big-endian length (of what follows), a u16 big-endian protocol version (2),
then the body: a JSON array of request objects; the answer frame carries a
JSON array of answer objects in the same order (or one object with
`"ok": false` when the whole frame was refused).

Retries: a request id makes a request idempotent, so a batch whose answer was
lost (connection reset, daemon restarted) is sent again with the same ids
and gets the first answers. `overloaded` and `shutting_down` answers are
retried the same way after a pause.

    client = await VoucherdClient.connect("127.0.0.1", 7443, certs="certs", role="gateway")
    answers = await client.execute([{"id": "g-1", "op": "audit_head"}])
    await client.close()
"""

import asyncio
import json
import os
import struct
import ssl

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamDataReceived, StreamReset, ConnectionTerminated

ALPN = "voucherd-json/1"
PROTOCOL_VERSION = 2
FRAME_BYTES_MAX = 4 * 1024 * 1024
BATCH_OPS_MAX = 1024
RETRYABLE = {"overloaded", "shutting_down"}


class FrameRefused(Exception):
    """The daemon refused a whole frame (nothing in it ran)."""

    def __init__(self, reason, message):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def encode_frame(requests):
    """A request frame: length, version, JSON array."""
    if not 1 <= len(requests) <= BATCH_OPS_MAX:
        raise ValueError(f"a frame carries 1 to {BATCH_OPS_MAX} requests")
    body = json.dumps(requests, ensure_ascii=False).encode("utf-8")
    if len(body) + 2 > FRAME_BYTES_MAX:
        raise ValueError("the requests do not fit in one frame")
    return struct.pack(">IH", len(body) + 2, PROTOCOL_VERSION) + body


def decode_frame(data):
    """The body of an answer frame: a list of answers, or FrameRefused."""
    if len(data) < 6:
        raise ConnectionError("answer frame shorter than its header")
    length, version = struct.unpack(">IH", data[:6])
    if length != len(data) - 4 or version != PROTOCOL_VERSION:
        raise ConnectionError(f"bad answer frame header ({length}, version {version})")
    body = json.loads(data[6:].decode("utf-8"))
    if isinstance(body, dict):
        raise FrameRefused(body.get("reason"), body.get("message"))
    return body


class _Protocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._streams = {}

    async def exchange(self, frame):
        stream_id = self._quic.get_next_available_stream_id()
        waiter = self._loop.create_future()
        self._streams[stream_id] = (bytearray(), waiter)
        self._quic.send_stream_data(stream_id, frame, end_stream=True)
        self.transmit()
        return await waiter

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived) and event.stream_id in self._streams:
            buffer, waiter = self._streams[event.stream_id]
            buffer.extend(event.data)
            if event.end_stream:
                del self._streams[event.stream_id]
                if not waiter.done():
                    waiter.set_result(bytes(buffer))
        elif isinstance(event, StreamReset) and event.stream_id in self._streams:
            _, waiter = self._streams.pop(event.stream_id)
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"stream reset ({event.error_code})"))
        elif isinstance(event, ConnectionTerminated):
            for _, waiter in self._streams.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError(f"connection closed: {event.reason_phrase}"))
            self._streams.clear()


class VoucherdClient:
    """One QUIC connection to voucherd as one role; reconnects when asked."""

    def __init__(self, host, port, certs, role, server_name=None):
        self.host, self.port, self.certs, self.role = host, port, certs, role
        self.server_name = server_name or host
        self._context = None
        self._protocol = None

    @classmethod
    async def connect(cls, host, port, certs, role, server_name=None):
        client = cls(host, port, certs, role, server_name)
        await client.reconnect()
        return client

    def _configuration(self):
        configuration = QuicConfiguration(
            is_client=True,
            alpn_protocols=[ALPN],
            server_name=self.server_name,
            verify_mode=ssl.CERT_REQUIRED,
        )
        configuration.load_verify_locations(os.path.join(self.certs, "ca.pem"))
        configuration.load_cert_chain(
            os.path.join(self.certs, f"{self.role}.pem"),
            os.path.join(self.certs, f"{self.role}.key"),
        )
        return configuration

    async def reconnect(self):
        await self.close()
        self._context = connect(
            self.host,
            self.port,
            configuration=self._configuration(),
            create_protocol=_Protocol,
        )
        self._protocol = await asyncio.wait_for(self._context.__aenter__(), timeout=5)

    async def execute(self, requests, timeout=10.0):
        """Sends one frame; returns its answers (a list of dicts, in order)."""
        data = await asyncio.wait_for(self._protocol.exchange(encode_frame(requests)), timeout)
        return decode_frame(data)

    async def execute_retrying(self, requests, attempts=5, pause=0.2):
        """Sends a batch until every answer is final, reconnecting when the
        connection fails; retries use the same request ids, so nothing is
        applied twice."""
        answers = {}
        pending = list(requests)
        for attempt in range(attempts):
            try:
                got = await self.execute(pending)
            except (ConnectionError, asyncio.TimeoutError):
                await asyncio.sleep(pause)
                await self.reconnect()
                continue
            retry = []
            for request, answer in zip(pending, got):
                if not answer.get("ok") and answer.get("reason") in RETRYABLE:
                    retry.append(request)
                else:
                    answers[request["id"]] = answer
            pending = retry
            if not pending:
                break
            await asyncio.sleep(pause * (attempt + 1))
        if pending:
            raise ConnectionError(f"{len(pending)} requests got no final answer")
        return [answers[request["id"]] for request in requests]

    async def close(self):
        if self._context is not None:
            context, self._context = self._context, None
            self._protocol.close()
            await context.__aexit__(None, None, None)
