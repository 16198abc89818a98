"""kemi_routing.py: the routing logic of kamailio-kemi.cfg, in Python (KEMI, app_python3).

The same SIP handling as routing-common.cfg, written for operators who keep their
logic in a KEMI language: sanity checks, retransmissions, CANCEL, in-dialog requests,
REGISTER into usrloc, OPTIONS keepalive; for each new INVITE the engine request
(the fields of route[ENGINE_REQUEST], built with json), the engine asked over HTTP,
EVAPI or in this process (ENGINE_MODE, kamailio-kemi.cfg), the rtjson answer
applied (reply, location lookup, serial failover, parallel forking), per-trunk caps
and the outcome events (routing-common.cfg's fields, docs/outcomes.md). The engine
redundancy of the native configs too: over HTTP a second engine (ENGINE_URL2, as
kamailio-http.cfg), over EVAPI the hot standby (a call not answered within
ENGINE_RETRY_MS asked once of the next live bridge, as kamailio-evapi.cfg), with
their retry budgets and the same log lines.

Every route is a method of the class `kamailio` (app_python3 calls mod_init() for
one instance per process). Kamailio forks its processes after loading this script,
and a transaction's replies, failure routes, resumed routes and the dialog's end run
in whichever process gets them: what one call needs later lives in transaction
AVPs, dialog variables or htables, never in Python attributes. The only Python state
is per process: the settings read from the defines, and the in-process engine.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import urllib.error
import urllib.request
import zlib

import KSR

# Outcome events per POST (each about 400 bytes), as kamailio-http.cfg.
OUTCOME_BATCH = 16
# Kamailio's process ranks (core/sr_module.h): SIP workers are 1..N; 127 is the
# "SIP RPC" rank, negative ranks are timers, the main and helper processes.
PROC_SIPRPC = 127


def define(name: str, default: str = "") -> str:
    """A #!define of the config (or -A), without the double quotes of a string."""
    value = KSR.kx.get_def(name)
    if value is None:
        return default
    value = str(value)
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


def define_int(name: str, default: int) -> int:
    """A numeric #!define; `default` when it is unset or not a number (a define whose
    value is another define's name, for instance)."""
    try:
        return int(define(name, str(default)))
    except ValueError:
        return default


def pv_int(spec: str, default: int = 0) -> int:
    value = KSR.pv.get(spec)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def log(level: str, text: str) -> None:
    getattr(KSR, level)(text + "\n")


# The retry budgets of second asks (engine_retry_tokens over HTTP, evapi_retry_tokens
# over EVAPI; kamailio-http.cfg says why), in tenths of a second ask: each answered
# call earns one, up to RETRY_BUDGET_MAX; each second ask costs RETRY_COST. Shared
# memory, read and written by several processes without a lock: a lost update only
# makes a budget a little off.
RETRY_BUDGET_MAX = 1000
RETRY_COST = 10


def earn_retry(budget: str) -> None:
    tokens = pv_int(f"$shv({budget})")
    if tokens < RETRY_BUDGET_MAX:
        KSR.pvx.shv_seti(budget, tokens + 1)


def spend_retry(budget: str) -> bool:
    """Whether a second ask is within `budget` (and then spend it)."""
    tokens = pv_int(f"$shv({budget})")
    if tokens < RETRY_COST:
        return False
    KSR.pvx.shv_seti(budget, tokens - RETRY_COST)
    return True


def evapi_event(fields: dict) -> str:
    """The routing event of this transaction: its id (for the answer's xtra) and the
    engine request's fields."""
    event = {"tindex": pv_int("$T(id_index)"), "tlabel": pv_int("$T(id_label)"), **fields}
    return json.dumps(event)


class Settings:
    """The knobs of kamailio-kemi.cfg, read once per process."""

    def __init__(self) -> None:
        self.mode = define("ENGINE_MODE", "http")
        self.failover_codes = define("FAILOVER_CODES", "5[0-9][0-9]|408")
        self.registrar_networks = define("REGISTRAR_NETWORKS", "127.0.0.0/8")
        self.cap_instances = max(1, int(define("CAP_INSTANCES", "1") or 1))
        self.engine_url = define("ENGINE_URL")
        self.engine_url2 = define("ENGINE_URL2")
        self.outcome_url = define("OUTCOME_URL")
        self.token = define("ENGINE_TOKEN")
        self.timeout_ms = define_int("ENGINE_TIMEOUT_MS", 1000)
        # One HTTP query's timeout: the config's default is 500 with ENGINE_URL2, else
        # ENGINE_TIMEOUT_MS (a define naming another define reads as the latter).
        self.try_timeout_ms = define_int("ENGINE_TRY_TIMEOUT_MS", self.timeout_ms)
        self.retry_ms = define_int("ENGINE_RETRY_MS", 400)
        self.evapi_networks = define("EVAPI_ALLOWED_NETWORKS", "127.0.0.0/8")
        self.project_dir = define("ENGINE_PROJECT_DIR")
        self.pythonpath = define("ENGINE_PYTHONPATH")
        self.engine_module = define("ENGINE_MODULE", "kamailio.inprocess")


class ApplyError(Exception):
    """The engine's answer cannot be applied: the caller gets a 503 with this reason."""


class kamailio:
    def __init__(self) -> None:
        self.settings = Settings()
        self.engine = None
        self.engine_failed = False

    # --- Process start ------------------------------------------------------------

    def child_init(self, rank: int) -> int:
        """In-process mode: each SIP worker starts its own engine (Django, its table)."""
        if self.settings.mode == "inprocess" and 0 < rank < PROC_SIPRPC:
            self.start_engine()
        return 0

    def engine_module(self):
        """ENGINE_MODULE, the project's kamailio.inprocess (the project dir and the
        virtualenv put on sys.path first); None, logged, when it cannot be imported."""
        paths = [self.settings.project_dir, *self.settings.pythonpath.split(":")]
        for path in reversed([p for p in paths if p]):
            if path not in sys.path:
                sys.path.insert(0, path)
        try:
            # Imported by name: this script's own class is called `kamailio`.
            return importlib.import_module(self.settings.engine_module)
        except Exception as exc:  # any failure: logged, calls get 503
            self.engine_failed = True
            log("err", f"in-process routing engine could not be imported: {exc!r}")
            return None

    def preload_engine(self) -> None:
        """In Kamailio's main process, before it forks: the tables loaded once, their
        pages shared by every SIP worker (kamailio.inprocess.preload)."""
        inprocess = self.engine_module()
        if inprocess is None:
            return
        try:
            loading = inprocess.preload()
        except Exception as exc:  # each worker tries again in start()
            log("err", f"in-process routing engine could not preload its tables: {exc!r}")
        else:
            still = f" ({', '.join(loading)} still loading)" if loading else ""
            log("info", f"in-process routing engine preloaded{still}")

    def start_engine(self) -> None:
        """The project's in-process engine, in this process (once; a failure is logged
        and every call then gets a fast 503 from this worker)."""
        if self.engine is not None or self.engine_failed:
            return
        inprocess = self.engine_module()
        if inprocess is None:
            return
        try:
            self.engine = inprocess.start()
        except Exception as exc:  # any failure: logged, calls get 503
            self.engine_failed = True
            log("err", f"in-process routing engine could not start: {exc!r}")
        else:
            log("info", "in-process routing engine started")

    # --- request_route ---------------------------------------------------------------

    def ksr_request_route(self, msg) -> int:
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return 1
        if KSR.sanity.sanity_check(17895, 7) < 0:
            log("warn", f"malformed request from {KSR.kx.get_srcip()} dropped")
            return 1

        # A CANCEL follows its INVITE's transaction; with none it is a stray.
        if KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                self.relay()
            return 1

        # Retransmissions are absorbed by their transaction (and never ask the engine).
        if not KSR.is_ACK():
            if KSR.tmx.t_precheck_trans() > 0:
                KSR.tm.t_check_trans()
                return 1
            if KSR.tm.t_check_trans() == 0:
                return 1

        if KSR.siputils.has_totag() > 0:
            self.within_dialog()
            return 1

        # Initial requests from here on.
        KSR.hdr.remove("Route")

        if KSR.is_REGISTER():
            self.registrar()
            return 1
        if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.pv.is_null("$rU"):
            KSR.sl.sl_send_reply(200, "Keepalive")
            return 1
        if KSR.is_ACK():
            return 1  # matches no transaction and no dialog
        if not KSR.is_INVITE():
            KSR.hdr.append_to_reply("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER\r\n")
            KSR.sl.sl_send_reply(405, "Method Not Allowed")
            return 1
        if KSR.pv.is_null("$rU"):
            KSR.sl.sl_send_reply(484, "Address Incomplete")
            return 1

        KSR.rr.record_route()
        # Before the transaction exists, so the dialog follows it (caps, end events).
        KSR.dialog.dlg_manage()

        fields = self.engine_request()
        mode = self.settings.mode
        if mode == "evapi":
            self.ask_evapi(fields)
        elif mode == "inprocess":
            self.ask_inprocess(fields)
        else:
            self.ask_http(fields)
        return 1

    def ksr_reply_route(self, msg) -> int:
        """Every reply (app_python3 calls it when present, and fails without it):
        replies are handled per transaction, in ksr_outcome_reply."""
        return 1

    def ksr_onsend_route(self, msg) -> int:
        """Every request sent (likewise required): nothing to do."""
        return 1

    def within_dialog(self) -> None:
        """In-dialog requests follow the Route set recorded at setup."""
        if KSR.rr.loose_route() > 0:
            self.relay()
            return
        if KSR.is_ACK():
            # The ACK of a negative reply belongs to the INVITE transaction.
            if KSR.tm.t_check_trans() > 0:
                self.relay()
            return
        KSR.sl.sl_send_reply(404, "Not Here")

    def relay(self) -> None:
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()

    def registrar(self) -> None:
        source = KSR.kx.get_srcip()
        if KSR.ipops.is_in_subnet(source, self.settings.registrar_networks) < 0:
            log("warn", f"REGISTER for {KSR.pv.get('$tu')} from {source} refused: "
                "not in REGISTRAR_NETWORKS")  # fmt: skip
            KSR.sl.sl_send_reply(403, "Forbidden")
            return
        if KSR.registrar.save("location", 0) < 0:
            KSR.sl.sl_reply_error()

    def engine_request(self) -> dict:
        """The fields route[ENGINE_REQUEST] sends: absent ones are null, never "<null>"."""

        def text_or_null(spec: str):
            value = KSR.pv.get(spec)
            return None if value is None else str(value)

        def name(spec: str):
            if len(KSR.pv.get(spec) or "") > 0:
                return str(KSR.pv.get(f"$({spec[1:]}{{s.unquote}})"))
            return None

        fields = {
            "event": "sip-routing",
            "source_ip": KSR.kx.get_srcip(),
            "source_port": pv_int("$sp"),
            "call_id": KSR.kx.get_callid(),
            "from_name": name("$fn"),
            "from_uri": text_or_null("$fu"),
            "from_tag": text_or_null("$ft"),
            "to_name": name("$tn"),
            "to_uri": text_or_null("$tu"),
            "to_tag": None,
            "ruri": text_or_null("$ru"),
        }
        # Trust X-Account only from your SBC (routing-common.cfg says why).
        if KSR.hdr.is_present("X-Account") > 0:
            fields["account"] = text_or_null("$hdr(X-Account)")
        fields["caller"] = text_or_null("$fU")
        fields["callee"] = text_or_null("$rU")
        return fields

    # --- Asking the engine: HTTP -------------------------------------------------------

    def ask_http(self, fields: dict) -> None:
        # The transaction first: retransmissions are absorbed while the engine thinks.
        if KSR.tm.t_newtran() < 0:
            KSR.sl.sl_reply_error()
            return
        first = self.first_engine_url()
        if self.settings.engine_url2:
            # For the resumed route, which runs in another process (the AVP goes with
            # the transaction).
            KSR.pv.seti("$avp(engine_first)", first)
        # Suspends the transaction; ksr_http_answer resumes it, in another process.
        if not self.http_query(first, fields):
            log("err", "routing engine query could not be sent")
            KSR.sl.send_reply(503, "Routing Engine Unavailable")

    def first_engine_url(self) -> int:
        """Which engine to ask first: 1 (ENGINE_URL), or 2 (ENGINE_URL2) when only
        ENGINE_URL failed a query in the last 10 s (htable engine_down). So while a
        host is down or cut off, calls do not each wait ENGINE_TRY_TIMEOUT_MS for it."""
        if not self.settings.engine_url2:
            return 1
        if (
            KSR.htable.sht_is_null("engine_down", "1") < 0
            and KSR.htable.sht_is_null("engine_down", "2") > 0
        ):
            return 2
        return 1

    def http_query(self, engine: int, fields: dict) -> bool:
        """POST `fields` to engine 1 (ENGINE_URL) or 2 (ENGINE_URL2) with
        http_async_client; the answer resumes the transaction in ksr_http_answer."""
        url = self.settings.engine_url2 if engine == 2 else self.settings.engine_url
        KSR.pv.unset("$http_req(all)")
        KSR.pv.sets("$http_req(method)", "POST")
        KSR.pv.seti("$http_req(timeout)", self.settings.try_timeout_ms)
        KSR.pv.sets("$http_req(hdr)", "Content-Type: application/json")
        KSR.pv.sets("$http_req(hdr)", "Authorization: Token " + self.settings.token)
        KSR.pv.sets("$http_req(body)", json.dumps(fields))
        # 0 when the transaction is suspended (the native config's "exit"), < 0 on error.
        return KSR.http_async_client.query(url, "ksr_http_answer") >= 0

    def ksr_http_answer(self, msg) -> int:
        status = 0
        body = ""
        if KSR.pv.get("$http_ok"):
            status = pv_int("$http_rs")
            body = KSR.pv.get("$http_rb") or ""
        else:
            log("err", f"routing engine unreachable: {KSR.pv.get('$http_err')}")
        if status != 200 and self.settings.engine_url2 and self.ask_other_engine_url(status):
            return 1
        # Only a 200 carries a decision.
        if status != 200:
            log("err", f"routing engine answered {status} for {KSR.kx.get_callid()}: {body}")
            KSR.sl.send_reply(503, "Routing Engine Unavailable")
            return 1
        if self.settings.engine_url2:
            earn_retry("engine_retry_tokens")
        self.apply_answer(body, wrapped=True)
        return 1

    def ask_other_engine_url(self, status: int) -> bool:
        """The engine asked first failed this call (`status`: not 200): the other one,
        once, within the retry budget. True when that query is under way: this
        resumed route suspends the transaction again (http_async_client calls
        t_suspend, which allows it) and the answer comes back to ksr_http_answer."""
        if not KSR.pv.is_null("$avp(engine_try2)"):
            return False  # the second answer
        KSR.pv.seti("$avp(engine_try2)", 1)
        first = pv_int("$avp(engine_first)", 1)
        KSR.htable.sht_seti("engine_down", str(first), 1)
        call_id = KSR.kx.get_callid()
        if not spend_retry("engine_retry_tokens"):
            log("warn", f"routing engine failed for {call_id}, retry budget spent: "
                "not asking the other one")  # fmt: skip
            return False
        log("warn", f"routing engine {first} answered {status} for {call_id}: "
            "asking the other one")  # fmt: skip
        # The request again: this process did not build it (the resumed route sees the
        # transaction's INVITE).
        if self.http_query(3 - first, self.engine_request()):
            return True
        log("err", "routing engine query to the other engine could not be sent")
        return False

    # --- Asking the engine: in this process --------------------------------------------

    def ask_inprocess(self, fields: dict) -> None:
        if KSR.tm.t_newtran() < 0:
            KSR.sl.sl_reply_error()
            return
        if self.engine is None:
            # Not a SIP worker started by child_init (e.g. a TCP worker): start it here.
            self.start_engine()
        if self.engine is None:
            log("err", f"no in-process routing engine: 503 for {fields['call_id']}")
            KSR.sl.send_reply(503, "Routing Engine Unavailable")
            return
        try:
            answer = self.engine.answer(fields)
        except Exception as exc:  # the interface never raises; a bug still gets a 503
            log("err", f"in-process routing engine failed for {fields['call_id']}: {exc!r}")
            KSR.sl.send_reply(503, "Routing Engine Unavailable")
            return
        self.apply_answer(answer, wrapped=False)

    # --- Asking the engine: EVAPI -------------------------------------------------------

    def ask_evapi(self, fields: dict) -> None:
        engine = self.pick_engine(fields["call_id"])
        if engine == 0:
            # Without this check the event goes nowhere and the call waits for the
            # transaction timer.
            log("err", f"no routing engine connected to EVAPI: 503 for {fields['call_id']}")
            KSR.sl.sl_send_reply(503, "Routing Engine Unavailable")
            return
        # The transaction first, so its id can go in the event (evapi_async_unicast
        # then suspends this transaction).
        if KSR.tm.t_newtran() < 0:
            KSR.sl.sl_reply_error()
            return
        KSR.pv.seti("$avp(engine)", engine)
        # The fr timer runs while the transaction is suspended: a short one, and a
        # failure route that asks another engine or answers 503, bound the wait for a
        # dead or hung engine.
        retry_ms = self.settings.retry_ms
        KSR.tm.t_set_fr(0, retry_ms if retry_ms > 0 else self.settings.timeout_ms)
        KSR.tm.t_on_failure("ksr_engine_no_answer")
        if KSR.evapi.async_unicast(evapi_event(fields), f"e{engine}") < 0:
            log("err", f"EVAPI send failed for {fields['call_id']}")
            KSR.sl.send_reply(503, "Routing Engine Unavailable")

    def pick_engine(self, call_id: str) -> int:
        """The live engine for this call: entry (hash of the Call-ID) mod n of the live
        list, or the next one not suspect; 0 when none is connected."""
        count = pv_int("$shv(evapi_engines)")
        if count <= 0:
            return 0
        first = zlib.crc32(call_id.encode()) % count
        fallback = 0
        for step in range(count):
            slot = KSR.htable.sht_get("evapi", f"l{(first + step) % count}")
            if not slot:
                continue
            slot = int(slot)
            if fallback == 0:
                fallback = slot
            if KSR.htable.sht_is_null("evapi_suspect", str(slot)) > 0:
                return slot
        return fallback

    def ksr_evapi_event(self, msg, event: str) -> int:
        if event == "evapi:message-received":
            self.evapi_answer()
        elif event == "evapi:connection-new":
            self.evapi_connected()
        elif event == "evapi:connection-closed":
            self.evapi_closed()
        return 1

    def evapi_connected(self) -> None:
        address = KSR.pv.get("$evapi(srcaddr)")
        port = KSR.pv.get("$evapi(srcport)")
        if KSR.ipops.is_in_subnet(address, self.settings.evapi_networks) < 0:
            log("warn", f"EVAPI client {address}:{port} refused: not in EVAPI_ALLOWED_NETWORKS")
            KSR.evapi.close()
            return
        # Runs in the EVAPI dispatcher only, one event at a time: the list's writer.
        slot = pv_int("$evapi(conidx)") + 1
        KSR.evapi.set_tag(f"e{slot}")
        KSR.htable.sht_rm("evapi_suspect", str(slot))
        count = pv_int("$shv(evapi_engines)")
        # The entry first, then the count: a SIP worker never reads a missing entry.
        KSR.htable.sht_seti("evapi", f"l{count}", slot)
        KSR.htable.sht_seti("evapi", f"p{slot}", count)
        KSR.pvx.shv_seti("evapi_engines", count + 1)
        log("info", f"routing engine connected from {address}:{port} as e{slot} "
            f"({count + 1} connected)")  # fmt: skip

    def evapi_closed(self) -> None:
        slot = pv_int("$evapi(conidx)") + 1
        if KSR.htable.sht_is_null("evapi", f"p{slot}") > 0:
            return  # a refused stranger
        position = int(KSR.htable.sht_get("evapi", f"p{slot}"))
        last = pv_int("$shv(evapi_engines)") - 1
        if position != last:
            moved = int(KSR.htable.sht_get("evapi", f"l{last}") or 0)
            KSR.htable.sht_seti("evapi", f"l{position}", moved)
            KSR.htable.sht_seti("evapi", f"p{moved}", position)
        KSR.pvx.shv_seti("evapi_engines", last)
        KSR.htable.sht_rm("evapi", f"l{last}")
        KSR.htable.sht_rm("evapi", f"p{slot}")
        log("warn", f"routing engine e{slot} at {KSR.pv.get('$evapi(srcaddr)')}:"
            f"{KSR.pv.get('$evapi(srcport)')} disconnected ({last} connected)")  # fmt: skip

    def evapi_answer(self) -> None:
        """An answer: find its transaction in xtra and resume it with the answer."""
        text = KSR.pv.get("$evapi(msg)") or ""
        try:
            xtra = json.loads(text).get("xtra") or {}
            tindex, tlabel = int(xtra["tindex"]), int(xtra["tlabel"])
        except (ValueError, TypeError, KeyError, AttributeError):
            # No call to answer: the engine is broken; its call gets a 503 at its timer.
            log("err", f"EVAPI message without xtra.tindex/tlabel dropped: {text}")
            return
        # The resumed route runs in this same process, at once: it reads $var(rtjson).
        KSR.pv.sets("$var(rtjson)", text)
        if KSR.tmx.t_continue(tindex, tlabel, "ksr_evapi_resume") < 0:
            log("warn", f"EVAPI answer for a transaction that is gone or answered: "
                f"{tindex}:{tlabel}")  # fmt: skip

    def ksr_evapi_resume(self, msg) -> int:
        # The engine answered: the trunks get the normal timers, and a failed branch no
        # longer means the engine did not answer.
        KSR.tm.t_reset_fr()
        KSR.tm.t_on_failure("ksr_branches_failed")
        earn_retry("evapi_retry_tokens")
        asked = KSR.pv.get("$avp(engine_retry_t)")
        if asked is not None:
            log("warn", f"routing engine answered {KSR.kx.get_callid()} "
                f"{self.elapsed_ms(asked)} ms after it was asked again")  # fmt: skip
        self.apply_answer(KSR.pv.get("$var(rtjson)") or "", wrapped=False)
        return 1

    def ksr_engine_no_answer(self, msg) -> int:
        """The engine did not answer in time. After ENGINE_RETRY_MS: ask the next live
        engine once (it gets the rest of ENGINE_TIMEOUT_MS, within the retry budget),
        or, with no other engine or no budget left, wait for the first one; after
        ENGINE_TIMEOUT_MS: 503. The engine that did not answer is skipped by new calls
        for 10 s while another one is connected.

        A failure route may suspend the transaction again (tm's t_suspend allows it),
        but evapi's async_unicast is for request routes only: t_suspend here, and the
        event, with the same transaction id, queued for ksr_engine_retry_send. A late
        answer from the first engine still resumes the call; the second answer then
        finds it resumed and is dropped."""
        if KSR.tm.t_is_canceled() > 0:
            return 1
        settings = self.settings
        call_id = KSR.kx.get_callid()
        if settings.retry_ms > 0 and KSR.pv.is_null("$avp(engine_waited)"):
            KSR.pv.seti("$avp(engine_waited)", 1)
            first = pv_int("$avp(engine)")
            KSR.htable.sht_seti("evapi_suspect", str(first), 1)
            # Another engine, if there is one and the retry budget allows (as
            # kamailio-evapi.cfg); else the first one is waited for: with one engine,
            # or when every engine is slow, asking again would only add load to an
            # overloaded engine.
            engine = self.pick_engine(call_id)
            fields = None
            if engine not in (0, first) and spend_retry("evapi_retry_tokens"):
                # The request again (this process did not build it), from the same
                # INVITE.
                fields = self.engine_request()
                # When, for the resumed route's log line. One time.time() text, as the
                # script's other times, not the native config's two 32-bit integers
                # ($avp(engine_retry_s/_u)).
                KSR.pv.sets("$avp(engine_retry_t)", repr(time.time()))
            KSR.tm.t_set_fr(0, settings.timeout_ms - settings.retry_ms)
            KSR.tm.t_on_failure("ksr_engine_no_answer")
            if KSR.tmx.t_suspend() > 0:
                if fields is not None:
                    KSR.mqueue.mq_add("evapi_retry", f"e{engine}", evapi_event(fields))
                    log("warn", f"routing engine did not answer {call_id} within "
                        f"ENGINE_RETRY_MS: asked e{engine}")  # fmt: skip
                else:
                    log("warn", f"routing engine did not answer {call_id} within "
                        "ENGINE_RETRY_MS: waiting for it (no other engine, or the retry "
                        "budget is spent)")  # fmt: skip
                return 1
            log("err", f"could not suspend {call_id} to wait for an engine")
        log("err", f"routing engine did not answer {call_id} in time "
            "(ENGINE_TIMEOUT_MS): 503")  # fmt: skip
        KSR.tm.t_reply(503, "Routing Engine Timeout")
        return 1

    def ksr_engine_retry_send(self, msg, event: str) -> int:
        """The rtimer process (every 10 ms): the second asks the failure routes queued,
        each to its engine (evapi hands it to the EVAPI dispatcher, which writes it)."""
        while KSR.mqueue.mq_fetch("evapi_retry") > 0:
            KSR.evapi.relay_unicast(
                KSR.mqueue.mqv_get("evapi_retry"), KSR.mqueue.mqk_get("evapi_retry")
            )
        return 1

    def ksr_branches_failed(self, msg) -> int:
        """Parallel forking and location lookups: tm sends the caller the best reply."""
        return 1

    # --- The rtjson answer ---------------------------------------------------------------

    def apply_answer(self, text: str, *, wrapped: bool) -> None:
        """Turn the engine's answer into SIP (route[RTJSON_APPLY]); a transaction exists.

        `wrapped`: the HTTP answer, {"rtjson": {...}}; else the rtjson document itself
        (EVAPI adds "xtra", which rtjson ignores).
        """
        try:
            document = json.loads(text)
            if wrapped or (isinstance(document, dict) and "rtjson" in document):
                document = document.get("rtjson") if isinstance(document, dict) else None
            if not isinstance(document, dict):
                raise ApplyError("not a JSON object")
            self.route_call(document)
        except (ValueError, ApplyError) as exc:
            log("err", f"routing engine answer unusable ({exc}): {text}")
            KSR.sl.send_reply(503, "Routing Engine Answer Invalid")

    def route_call(self, document: dict) -> None:
        caller = KSR.pv.get("$fU")
        callee = KSR.pv.get("$rU")
        success = document.get("success")
        if success not in (True, False, 0, 1):
            raise ApplyError("no success field")
        decision = document.get("decision_id") or "-"
        if not success:
            # Not to be routed: the engine says which SIP code and reason.
            code = document.get("code")
            reason = document.get("reason")
            if not isinstance(code, int) or not 300 <= code <= 699:
                log("err", f"routing engine refused the call with no valid code: {document}")
                code, reason = 500, "Routing Engine Answer Invalid"
            reason = reason if isinstance(reason, str) and reason else "Not Routed"
            log("info", f"routing {caller} -> {callee}: {code} {reason} (decision {decision})")
            KSR.sl.send_reply(code, reason)
            return

        routing = document.get("routing")
        if routing == "location":
            log("info", f"routing {caller} -> {callee}: location lookup (decision {decision})")
            self.location()
            return
        if routing not in ("serial", "parallel"):
            raise ApplyError(f"unknown routing {routing!r}")
        text = json.dumps(document)
        if KSR.rtjson.init_routes(text) < 0 or KSR.rtjson.push_routes() < 0:
            raise ApplyError("no usable routes")
        # The answer stays with the transaction: the failure route reads each route's
        # failover codes, the branch route its trunk and caps, the events its fields.
        KSR.pv.sets("$avp(rtjson)", text)
        self.outcome_base(document)
        KSR.tm.t_on_branch("ksr_rtjson_branch")
        KSR.tm.t_on_reply("ksr_outcome_reply")
        KSR.tm.t_on_branch_failure("ksr_outcome_failed")
        # The branch routes run in this process, in order, during t_relay: $var counts
        # them (as routing-common.cfg's $var(br_route)).
        KSR.pv.seti("$var(br_route)", 0)
        if routing == "serial":
            KSR.pv.seti("$avp(rt_index)", 0)
            if self.serial_free_route(document):
                log("warn", f"routing {caller} -> {callee}: every route at its cap "
                    f"(decision {decision}): 503")  # fmt: skip
                KSR.sl.send_reply(503, "All Trunks At Capacity")
                return
            KSR.pv.seti("$var(serial_first)", pv_int("$avp(rt_index)"))
            KSR.tm.t_on_failure("ksr_rtjson_next")
        log("info", f"routing {caller} -> {callee}: {routing} via {KSR.pv.get('$ru')} "
            f"(decision {decision})")  # fmt: skip
        if KSR.tm.t_relay() < 0:
            # Parallel routing whose every branch was dropped at its cap.
            log("warn", f"routing {caller} -> {callee}: no branch could be sent "
                f"(decision {decision}): 503")  # fmt: skip
            KSR.sl.send_reply(503, "All Trunks At Capacity")

    def location(self) -> None:
        """routing: location. The callee is a user registered here."""
        found = KSR.registrar.lookup("location")
        if found < 0:
            if found == -2:
                KSR.sl.send_reply(405, "Method Not Allowed")
            else:
                KSR.sl.send_reply(404, "Not Found")
            return
        self.relay()

    @staticmethod
    def stored_answer() -> dict:
        return json.loads(KSR.pv.get("$avp(rtjson)") or "{}")

    @staticmethod
    def route_of(document: dict, index: int) -> dict:
        routes = document.get("routes") or []
        if 0 <= index < len(routes) and isinstance(routes[index], dict):
            return routes[index]
        return {}

    def ksr_rtjson_branch(self, msg) -> int:
        """Each branch: its route's headers, flags and timers (serial only: an rtjson
        limitation), its trunk's caps (parallel), its outcome fields."""
        index = pv_int("$var(br_route)")
        KSR.pv.seti("$var(br_route)", index + 1)
        document = self.stored_answer()
        if KSR.pv.is_null("$avp(rt_index)"):
            # Parallel: take the trunk's slot here, or drop the branch at its cap.
            capped, _held = self.cap_check(document, index)
            if capped:
                KSR.set_drop()
                return 1
        elif index < pv_int("$var(serial_first)"):
            # Serial: a route skipped at its cap (serial_free_route).
            KSR.set_drop()
            return 1
        KSR.rtjson.update_branch()
        self.outcome_branch(document, index)
        return 1

    def ksr_rtjson_next(self, msg) -> int:
        """Serial failover: the next route when this one failed with its route's
        failover codes, else FAILOVER_CODES."""
        held = KSR.pv.get("$avp(cap_tid)")
        if held is not None:
            # The failed trunk's slot is free again.
            KSR.dialog.unset_dlg_profile("trunk_calls", str(held))
            KSR.pv.unset("$avp(cap_tid)")
        if KSR.tm.t_is_canceled() > 0:
            return 1
        document = self.stored_answer()
        index = pv_int("$avp(rt_index)")
        failover = self.route_of(document, index).get("failover")
        if not isinstance(failover, str) or not failover:
            failover = self.settings.failover_codes
        if KSR.tm.t_check_status(failover) < 0:
            return 1
        code = pv_int("$T_reply_code")
        if KSR.rtjson.next_route() < 0:
            return 1
        KSR.pv.seti("$avp(rt_index)", index + 1)
        # The branches appended from here on are routes rt_index, rt_index + 1, ...
        KSR.pv.seti("$var(br_route)", index + 1)
        caller, callee = KSR.pv.get("$fU"), KSR.pv.get("$rU")
        if self.serial_free_route(document):
            log("warn", f"routing {caller} -> {callee}: {code} from a route, "
                "the others at their cap: 503")  # fmt: skip
            KSR.tm.t_reply(503, "All Trunks At Capacity")
            return 1
        index = pv_int("$avp(rt_index)")
        log("info", f"routing {caller} -> {callee}: {code} from a route, trying route {index}")
        KSR.pv.seti("$var(serial_first)", index)
        KSR.tm.t_on_branch("ksr_rtjson_branch")
        KSR.tm.t_on_reply("ksr_outcome_reply")
        KSR.tm.t_on_branch_failure("ksr_outcome_failed")
        KSR.tm.t_on_failure("ksr_rtjson_next")
        KSR.tm.t_relay()
        return 1

    # --- Per-trunk caps ------------------------------------------------------------------

    def serial_free_route(self, document: dict) -> bool:
        """From route $avp(rt_index) on, the first whose trunk is under its caps (pushed
        with rtjson_next_route: skipped ones stay branches, dropped by the branch route).
        True when none is left."""
        index = pv_int("$avp(rt_index)")
        capped, held = self.cap_check(document, index)
        while capped:
            if KSR.rtjson.next_route() < 0:
                return True
            index += 1
            KSR.pv.seti("$avp(rt_index)", index)
            capped, held = self.cap_check(document, index)
        if held:
            # Given back by the failure route if this route fails.
            KSR.pv.seti("$avp(cap_tid)", held)
        return False

    def cap_check(self, document: dict, index: int) -> tuple[bool, int]:
        """(capped, held): whether route `index`'s trunk is at max_calls or max_cps;
        else the call is counted against both (held: the trunk id whose max_calls slot
        was taken, else 0). Under a lock on the trunk, so two SIP workers cannot both
        take its last slot."""
        route = self.route_of(document, index)
        try:
            trunk = int(route.get("trunk_id") or 0)
            max_calls = int(route.get("max_calls") or 0)
            max_cps = int(route.get("max_cps") or 0)
        except (TypeError, ValueError):
            return False, 0
        if not trunk or (max_calls <= 0 and max_cps <= 0):
            return False, 0
        share = self.settings.cap_instances
        if share > 1:
            # This instance's share (docs/kamailio.md, several Kamailios).
            max_calls = max(1, max_calls // share) if max_calls > 0 else 0
            max_cps = max(1, max_cps // share) if max_cps > 0 else 0
        name = f"{route.get('carrier', '')}/{route.get('trunk', '')}"
        lock = f"trunk_cap:{trunk}"
        KSR.cfgutils.lock(lock)
        try:
            if max_calls > 0:
                KSR.pv.seti("$var(calls)", 0)
                KSR.dialog.get_profile_size("trunk_calls", str(trunk), "$var(calls)")
                if pv_int("$var(calls)") >= max_calls:
                    log("warn", f"route {index} ({name}) skipped: at its cap of {max_calls} "
                        "concurrent calls")  # fmt: skip
                    return True, 0
            key = f"{trunk}:{int(time.time())}"
            if max_cps > 0:
                sent = int(KSR.htable.sht_get("trunk_cps", key) or 0)
                if sent >= max_cps:
                    log("warn", f"route {index} ({name}) skipped: at its cap of {max_cps} "
                        "calls per second")  # fmt: skip
                    return True, 0
                KSR.htable.sht_seti("trunk_cps", key, sent + 1)
            if max_calls > 0:
                KSR.dialog.set_dlg_profile("trunk_calls", str(trunk))
                return False, trunk
            return False, 0
        finally:
            KSR.cfgutils.unlock(lock)

    # --- Outcome events (docs/outcomes.md, routing-common.cfg) --------------------------

    def outcome_base(self, document: dict) -> None:
        """The answer's top-level fields, once per call, in $avp(ob_base)."""
        base = {"event": "sip-outcome"}
        for field in ("decision_id", "tenant", "prefix", "customer"):
            if document.get(field) is not None:
                base[field] = str(document[field])
        base["call_id"] = KSR.kx.get_callid()
        KSR.pv.sets("$avp(ob_base)", json.dumps(base))

    def outcome_branch(self, document: dict, index: int) -> None:
        """In the branch route: this branch's fields and when it was sent, in AVPs
        named after the branch index."""
        event = json.loads(KSR.pv.get("$avp(ob_base)") or "{}")
        event["route"] = index
        route = self.route_of(document, index)
        if isinstance(route.get("trunk_id"), int):
            event["trunk_id"] = route["trunk_id"]
        for field in ("trunk", "carrier"):
            if route.get(field) is not None:
                event[field] = str(route[field])
        branch = pv_int("$T_branch_idx")
        KSR.pv.sets(f"$avp(ob_ev{branch})", json.dumps(event))
        KSR.pv.sets(f"$avp(ob_t{branch})", repr(time.time()))

    @staticmethod
    def elapsed_ms(sent: str | None) -> int:
        try:
            return max(0, int((time.time() - float(sent)) * 1000))
        except (TypeError, ValueError):
            return 0

    def first_final(self, branch: int) -> bool:
        """True the first time a final reply of `branch` is seen (onreply route and
        branch-failure event both see some; several processes at once)."""
        key = f"{KSR.kx.get_callid()}:{branch}:final"
        lock = f"outcome:{key}"
        KSR.cfgutils.lock(lock)
        try:
            if KSR.htable.sht_is_null("outcome_marks", key) > 0:
                KSR.htable.sht_seti("outcome_marks", key, 1)
                return True
            return False
        finally:
            KSR.cfgutils.unlock(lock)

    def outcome_attempt(self, branch: int, code: int, answer_ms: int | None) -> dict | None:
        text = KSR.pv.get(f"$avp(ob_ev{branch})")
        if text is None:
            return None  # a branch this script did not make
        event = json.loads(text)
        event["kind"] = "attempt"
        event["code"] = code
        pdd = KSR.htable.sht_get("outcome_marks", f"{KSR.kx.get_callid()}:{branch}:pdd")
        event["pdd_ms"] = int(pdd) if pdd is not None else None
        event["answer_ms"] = answer_ms
        event["at"] = round(time.time(), 6)
        self.outcome_send(event)
        return event

    def ksr_outcome_reply(self, msg) -> int:
        """Replies of the routed INVITE's branches: the pdd mark, the attempt at the first
        final reply, the answered call's fields in the dialog."""
        status = pv_int("$rs")
        if KSR.pv.get("$rm") != "INVITE" or status <= 100:
            return 1
        branch = pv_int("$T_branch_idx")
        if status < 200:
            key = f"{KSR.kx.get_callid()}:{branch}:pdd"
            if KSR.htable.sht_is_null("outcome_marks", key) > 0:
                sent = KSR.pv.get(f"$avp(ob_t{branch})")
                KSR.htable.sht_seti("outcome_marks", key, self.elapsed_ms(sent))
            return 1
        if not self.first_final(branch):
            return 1
        if status >= 300:
            # tm:branch-failure does not run for a branch failing after another answered.
            self.outcome_attempt(branch, status, None)
            return 1
        event = self.outcome_attempt(
            branch, status, self.elapsed_ms(KSR.pv.get(f"$avp(ob_t{branch})"))
        )
        if event is not None:
            # What the end event needs: this branch's fields, the answer time.
            base = {k: v for k, v in event.items()
                    if k not in ("kind", "code", "pdd_ms", "answer_ms", "at")}  # fmt: skip
            KSR.pv.sets("$dlg_var(ob_ev)", json.dumps(base))
            KSR.pv.sets("$dlg_var(ob_ans)", repr(time.time()))
        return 1

    def ksr_outcome_failed(self, msg) -> int:
        """Every failed branch (tm:branch-failure): its attempt, unless the onreply route
        reported it; a timeout (408 made by tm) is only seen here."""
        branch = pv_int("$T_branch_idx")
        if self.first_final(branch):
            self.outcome_attempt(branch, pv_int("$T_reply_code"), None)
        return 1

    def ksr_dialog_event(self, msg, event: str) -> int:
        """dialog:end of an answered call (BYE, or the dialog timed out): its end event."""
        if event != "dialog:end":
            return 1
        text = KSR.pv.get("$dlg_var(ob_ev)")
        if text is None:
            return 1
        outcome = json.loads(text)
        outcome["kind"] = "end"
        outcome["duration_s"] = self.elapsed_ms(KSR.pv.get("$dlg_var(ob_ans)")) / 1000
        outcome["at"] = round(time.time(), 6)
        self.outcome_send(outcome)
        return 1

    def outcome_send(self, event: dict) -> None:
        """evapi: to one connected engine (the dispatcher writes it; nothing waits).
        http, inprocess: into the queue the timer process POSTs."""
        text = json.dumps(event)
        if self.settings.mode == "evapi":
            engine = self.pick_engine(event.get("call_id") or "")
            if engine:
                KSR.evapi.relay_unicast(text, f"e{engine}")
            return
        KSR.mqueue.mq_add("outcomes", event.get("call_id") or "", text)

    def ksr_outcome_flush(self, msg, event: str) -> int:
        """The rtimer process (every 100 ms): the queue, OUTCOME_BATCH events per POST.
        urllib blocks this timer process only, never a SIP worker; an engine that is
        down loses the events of that moment (logged), it never holds a call."""
        while KSR.mqueue.mq_size("outcomes") > 0:
            batch = []
            while len(batch) < OUTCOME_BATCH and KSR.mqueue.mq_fetch("outcomes") > 0:
                batch.append(KSR.mqueue.mqv_get("outcomes"))
            if not batch:
                break
            self.post_outcomes("[" + ",".join(batch) + "]", len(batch))
        return 1

    def post_outcomes(self, body: str, count: int) -> None:
        request = urllib.request.Request(  # noqa: S310 (the operator's OUTCOME_URL)
            self.settings.outcome_url,
            data=body.encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Token " + self.settings.token,
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=self.settings.timeout_ms / 1000
            ) as answer:
                status = answer.status
                text = answer.read(2000).decode(errors="replace")
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read(2000).decode(errors="replace")
        except (OSError, ValueError) as exc:
            status, text = 0, repr(exc)
        if status != 202:
            log("warn", f"outcome events: engine answered {status} for {count} events: {text}")


def mod_init() -> kamailio:
    """app_python3 calls this once, in the main process, before Kamailio forks."""
    script = kamailio()
    if script.settings.mode == "inprocess":
        script.preload_engine()
    return script
