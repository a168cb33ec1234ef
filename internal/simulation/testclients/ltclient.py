"""swarmaudit testclients: one libtorrent-rasterbar session with one torrent.

Run by the Go package internal/testclients under /usr/bin/python3 (python3-libtorrent 2.0.x):

    python3 ltclient.py CONFIG.json

The torrent seeds when its payload is complete in save_path, otherwise it downloads.
Control is line-based: stdin carries commands, stdout carries JSON objects only, one a line.

    stdin   "status ID"  -> {"type": "status", "id": ID, ...counters...}
            "quit"       -> graceful stop: remove the torrent (sends the tracker 'stopped'), exit
            EOF          -> same as quit (the Go side is gone)
    stdout  {"type": "ready", "port": N}        listening, torrent added
            {"type": "log", "msg": "..."}       alerts worth a line in the client's log
            {"type": "fatal", "msg": "..."}     then exit status 2

SIGTERM and SIGINT also stop gracefully.
"""
import faulthandler
import json
import signal
import sys
import threading
import time

# libtorrent 2.0.8 has crashed (SIGSEGV) in CI with an empty log: a crash now
# leaves the Python stack of every thread on stderr, which goes to the log.
faulthandler.enable()

import libtorrent as lt

OUT = threading.Lock()


def emit(obj):
    line = json.dumps(obj)
    with OUT:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def log(msg):
    emit({"type": "log", "msg": msg})


ENC = {
    # MSE handshake and RC4 stream mandatory: a plaintext handshake is dropped.
    "required": dict(out_enc_policy=int(lt.enc_policy.pe_forced), in_enc_policy=int(lt.enc_policy.pe_forced),
                     allowed_enc_level=int(lt.enc_level.pe_rc4), prefer_rc4=True),
    # MSE first, plaintext accepted.
    "preferred": dict(out_enc_policy=int(lt.enc_policy.pe_enabled), in_enc_policy=int(lt.enc_policy.pe_enabled),
                      allowed_enc_level=int(lt.enc_level.pe_both), prefer_rc4=True),
    # never MSE: incoming MSE handshakes are dropped.
    "disabled": dict(out_enc_policy=int(lt.enc_policy.pe_disabled), in_enc_policy=int(lt.enc_policy.pe_disabled),
                     allowed_enc_level=int(lt.enc_level.pe_plaintext), prefer_rc4=False),
}


def main():
    cfg = json.load(open(sys.argv[1]))
    ip, port = cfg["ip"], int(cfg["port"])
    settings = {
        "listen_interfaces": "%s:%d" % (ip, port),
        "outgoing_interfaces": ip,
        "enable_dht": bool(cfg["dht"]),
        # Never the built-in public bootstrap routers: only the loopback nodes the test names.
        "dht_bootstrap_nodes": ",".join(cfg.get("dht_nodes") or []),
        # Every DHT node of a test lives on 127.0.0.0/8: do not treat them as one Sybil.
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        # LSD (BEP 14) only when asked: it multicasts on every interface of the client's namespace.
        "enable_lsd": bool(cfg.get("lsd")), "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_tiers": True, "announce_to_all_trackers": True,
        "upload_rate_limit": int(cfg["up_kib"]) * 1024,
        "download_rate_limit": int(cfg["down_kib"]) * 1024,
        "alert_mask": int(lt.alert.category_t.error_notification | lt.alert.category_t.status_notification
                          | lt.alert.category_t.tracker_notification),
        "stop_tracker_timeout": 3,
        # Private trackers put the passkey in the path (/PASSKEY/announce); libtorrent's SSRF
        # mitigation blocks such paths on a localhost tracker, and every test tracker is on loopback.
        "ssrf_mitigation": False,
    }
    settings.update(ENC[cfg["enc"]])
    if cfg.get("utp"):
        # uTP (BEP 29) next to TCP, as libtorrent's defaults have it.
        settings.update({"enable_incoming_utp": True, "enable_outgoing_utp": True})
    if cfg.get("utp_only"):
        # uTP only (BEP 29): TCP connections are accepted by the socket and then dropped.
        settings.update({"enable_incoming_tcp": False, "enable_outgoing_tcp": False,
                         "enable_incoming_utp": True, "enable_outgoing_utp": True})
    if cfg.get("no_tcp_in"):
        # Nobody can connect to it over TCP (as behind a NAT); it still connects out.
        settings.update({"enable_incoming_tcp": False})
    # No default plugins (ut_pex only when asked for; smart_ban and ut_metadata are harmless),
    # but the default features: without that flag libtorrent would not start the DHT.
    ses = lt.session(settings, lt.session_flags_t.start_default_features)
    ses.add_extension("ut_metadata")
    ses.add_extension("smart_ban")
    if cfg["pex"]:
        ses.add_extension("ut_pex")
    # libtorrent exempts loopback/LAN peers from rate limits (its "local" peer class);
    # put every address in the global class so the limits apply to the loopback tests.
    f = lt.ip_filter()
    f.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    f.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1 << lt.session.global_peer_class_id)
    ses.set_peer_class_filter(f)

    ti = lt.torrent_info(cfg["torrent"])
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = cfg["save"]
    h = ses.add_torrent(atp)

    stop = threading.Event()

    def status(req_id):
        s = h.status()
        err = ""
        if s.errc.value() != 0:
            err = s.errc.message()
        return {
            "type": "status", "id": req_id,
            "state": str(s.state), "progress": s.progress, "is_seeding": bool(s.is_seeding),
            "paused": bool(s.flags & lt.torrent_flags.paused),
            "uploaded": s.total_payload_upload, "downloaded": s.total_payload_download,
            "total_wanted": s.total_wanted, "total_wanted_done": s.total_wanted_done,
            "up_rate": s.upload_payload_rate, "down_rate": s.download_payload_rate,
            "num_peers": s.num_peers, "error": err,
        }

    def read_commands():
        for line in sys.stdin:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "status" and len(parts) == 2:
                try:
                    emit(status(parts[1]))
                except Exception as e:  # noqa: BLE001 - reported, never fatal
                    emit({"type": "status", "id": parts[1], "error": "status: %s" % e})
            elif parts[0] == "quit":
                break
            else:
                log("unknown command %r" % line.strip())
        stop.set()

    threading.Thread(target=read_commands, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    ready = False
    while not stop.is_set():
        for a in ses.pop_alerts():
            if isinstance(a, lt.listen_succeeded_alert):
                if not ready and a.socket_type == lt.socket_type_t.tcp:
                    ready = True
                    emit({"type": "ready", "port": a.port})
            elif isinstance(a, lt.listen_failed_alert):
                emit({"type": "fatal", "msg": a.message()})
                sys.exit(2)
            elif a.category() & lt.alert.category_t.error_notification or isinstance(
                    a, (lt.tracker_reply_alert, lt.tracker_error_alert, lt.tracker_warning_alert,
                        lt.torrent_finished_alert)):
                log(a.message())
        ses.wait_for_alert(200)

    # Graceful stop: removing the torrent sends the 'stopped' announce; wait for its answer (bounded).
    ses.remove_torrent(h)
    if list(ti.trackers()):
        deadline = time.time() + 4
        while time.time() < deadline:
            done = False
            for a in ses.pop_alerts():
                if isinstance(a, (lt.tracker_reply_alert, lt.tracker_error_alert)):
                    log("stop: " + a.message())
                    done = True
            if done:
                break
            ses.wait_for_alert(200)
    del ses
    log("down")


if __name__ == "__main__":
    main()
