"""Answers as UDP datagrams to Kamailio's SIP port (its nosip module), EVAPI as the fallback.

Why: Kamailio resumes every transaction answered over EVAPI in its one "EvAPI
Dispatcher" process (t_continue runs where the answer is read), so that one process
caps the calls per second of the EVAPI path. A non-SIP datagram on the SIP UDP port
goes to event_route[nosip:msg] in whichever SIP worker reads it (kamailio-evapi.cfg,
WITH_NOSIP), so the resumes spread over all the SIP workers.

What goes: the same JSON the EVAPI answer carries (rtjson + "xtra": {"tindex",
"tlabel"}), unframed, one datagram per answer, plus "xtra"."key" when a shared key is
set (the config checks it: UDP sources can be spoofed). What does not go: an answer
over `max_bytes` (a datagram above the path MTU is fragmented, and losing one fragment
loses the answer), or one the kernel refuses at once (EAGAIN with a full send buffer,
ENOBUFS, ECONNREFUSED after Kamailio's port sent an ICMP unreachable, ...): `send()`
returns False and the bridge answers that event over EVAPI, as without nosip. A
datagram the kernel took but the network or Kamailio's full receive buffer dropped is
not seen here: that call is asked again (hot standby) or gets its 503 from Kamailio's
ENGINE_TIMEOUT_MS, as with a dead engine (docs/evapi.md, "Answers by nosip").

The socket is non-blocking and connected (so sends name no address, and an ICMP error
comes back on the next send). `send()` runs only in the event loop thread.

A refused port (nothing listens there: Kamailio down, or a wrong --nosip port) would
otherwise lose every other answer: each datagram draws an ICMP error that only the next
send reports. After ECONNREFUSED every answer goes by EVAPI, and a probe too short for
Kamailio to read (it ignores UDP packets under 20 bytes, as keep-alives) goes out at
most once a second; when a probe draws no error within that second, answers go by
nosip again.
"""

from __future__ import annotations

import json
import logging
import socket
import time

# A UDP datagram that fits one Ethernet frame without IP fragmentation (IPv4: 1500 MTU
# - 20 IP - 8 UDP). Measured answers (docs/evapi.md): 1 route with headers ~630 bytes,
# 3 routes with headers ~1,530, 8 plain routes ~1,460, 8 with headers ~3,800.
DEFAULT_MAX_BYTES = 1472
# The largest IPv4 UDP payload (65,535 - 20 - 8); Kamailio reads up to BUF_SIZE 65,535.
MAX_DATAGRAM = 65507
# nosip discards packets under 32 bytes (NAT keep-alives); no answer is that short.
MIN_DATAGRAM = 32
# The answer ends with its "xtra" object and the document's brace (kamailio.evapi).
_ANSWER_END = b"}}"
# While the port refuses: what is sent to find out whether it still does, and how often.
PROBE = b"\r\n\r\n"
PROBE_INTERVAL = 1.0

logger = logging.getLogger(__name__)


class NosipSender:
    """One Kamailio's SIP UDP address; `send(payload)` or False (then answer by EVAPI)."""

    def __init__(self, host: str, port: int, *, max_bytes: int, key: str = "") -> None:
        if not MIN_DATAGRAM <= max_bytes <= MAX_DATAGRAM:
            raise ValueError(f"max bytes {max_bytes}: must be {MIN_DATAGRAM} to {MAX_DATAGRAM}")
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP
        )[0]
        self.address = address
        self.max_bytes = max_bytes
        # The key goes inside "xtra" (`,"key":"..."` before its closing brace).
        self._key = b',"key":%s' % json.dumps(key).encode() if key else b""
        self._socket = socket.socket(family, kind, proto)
        self._socket.setblocking(False)
        self._socket.connect(address)
        self.sent = 0
        self.fallbacks = 0
        self.last_error = ""  # why the last fallback happened, for the logs
        self.refused = False  # the port refused: answers by EVAPI, probes until it accepts
        self._next_probe = 0.0
        self._probed = False

    def send(self, payload: bytes) -> bool:
        """Send one answer payload as a datagram; False when EVAPI must carry it."""
        if self.refused and not self._accepts_again():
            self.fallbacks += 1
            return False
        if self._key and payload.endswith(_ANSWER_END):
            payload = b"%s%s}}" % (payload[:-2], self._key)
        if len(payload) > self.max_bytes:
            self.fallbacks += 1
            self.last_error = f"answer of {len(payload)} bytes over {self.max_bytes}"
            return False
        try:
            self._socket.send(payload)
        except OSError as exc:  # EAGAIN, ENOBUFS, ECONNREFUSED, EMSGSIZE, a closed socket
            self.fallbacks += 1
            self.last_error = exc.strerror or type(exc).__name__
            if isinstance(exc, ConnectionRefusedError):
                self._refuse()
            return False
        self.sent += 1
        return True

    def _refuse(self) -> None:
        self.refused, self._probed = True, False
        self._next_probe = time.monotonic() + PROBE_INTERVAL
        logger.warning(
            "nosip %s refused (nothing listens there): answers go by EVAPI until it accepts",
            self.address,
        )

    def _accepts_again(self) -> bool:
        """While refused, at most once a second: the last probe drew no error? Else probe."""
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + PROBE_INTERVAL
        try:
            error = self._socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # and clear it
            if self._probed and not error:
                self.refused = False
                logger.warning("nosip %s accepts again: answers go by nosip", self.address)
                return True
            self._socket.send(PROBE)
            self._probed = True
        except OSError:  # refused again (the error of an earlier probe), or a closed socket
            self._probed = False
        return False

    def close(self) -> None:
        self._socket.close()
