"""swarmaudit bench/swarmmap: how long libtorrent takes to learn every peer's bitfield.

Run by the swarm-map benchmark (internal/audit) under /usr/bin/python3 (python3-libtorrent 2.0.x):

    python3 ltmap.py CONFIG.json

CONFIG: {"torrent": PATH, "save": DIR, "ip": "127.0.0.1", "peers": ["127.0.0.1:PORT", ...],
         "timeout": SECONDS, "connections_limit": N, "connection_speed": N}

One libtorrent session, bound to the loopback address "ip", with DHT, LSD, UPnP, NAT-PMP and uTP off,
adds the torrent (no trackers), waits until it is ready to download, then hands it every peer with
connect_peer and polls get_peer_info every 100 ms. A peer counts as mapped once get_peer_info has
shown it with a non-empty bitfield (num_pieces > 0; every simulated peer holds some pieces); the
set is cumulative, so a connection libtorrent closes after the bitfield arrived still counts.
When every peer is mapped, or after "timeout" seconds, it prints one JSON line:

    {"type": "result", "elapsed": S, "mapped": N, "pieces": {"ADDR": num_pieces, ...},
     "sent": B, "recv": B, "sent_payload": B, "recv_payload": B, "max_connected": N}

sent/recv are the session counters net.sent_bytes and net.recv_bytes (payload and protocol),
read when the map completed or timed out. Errors print {"type": "fatal", "msg": ...}, exit 2.
"""
import json
import sys
import time

import libtorrent as lt


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def session_counters(ses, names, wait=5.0):
    """Reads the named session counters (bounded wait for the stats alert)."""
    idx = {m.name: m.value_index for m in lt.session_stats_metrics()}
    ses.post_session_stats()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        ses.wait_for_alert(100)
        for a in ses.pop_alerts():
            if isinstance(a, lt.session_stats_alert):
                values = a.values
                return {n: int(values[n]) if isinstance(values, dict) else int(values[idx[n]]) for n in names}
    raise RuntimeError("no session_stats_alert within %.0f s" % wait)


def main():
    cfg = json.load(open(sys.argv[1]))
    ip = cfg["ip"]
    settings = {
        "listen_interfaces": "%s:0" % ip,
        "outgoing_interfaces": ip,
        "enable_dht": False, "dht_bootstrap_nodes": "",
        "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        # Every simulated peer is on the same loopback address.
        "allow_multiple_connections_per_ip": True,
        "connections_limit": int(cfg["connections_limit"]),
        "connection_speed": int(cfg["connection_speed"]),
        "max_peerlist_size": 4 * len(cfg["peers"]) + 100,
        # Keep connections to peers that have nothing we want: they are still mapped.
        "close_redundant_connections": False,
        # MSE first, plaintext accepted, as the simulated swarm mixes policies.
        "out_enc_policy": int(lt.enc_policy.pe_enabled), "in_enc_policy": int(lt.enc_policy.pe_enabled),
        "allowed_enc_level": int(lt.enc_level.pe_both), "prefer_rc4": True,
        "alert_mask": int(lt.alert.category_t.error_notification | lt.alert.category_t.status_notification),
    }
    ses = lt.session(settings)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(cfg["torrent"])
    atp.save_path = cfg["save"]
    atp.max_connections = int(cfg["connections_limit"])
    h = ses.add_torrent(atp)

    ready_by = time.monotonic() + 30
    while h.status().state not in (lt.torrent_status.downloading, lt.torrent_status.seeding):
        if time.monotonic() > ready_by:
            raise RuntimeError("torrent not ready after 30 s: %s" % h.status().state)
        time.sleep(0.02)
        ses.pop_alerts()

    want = set(cfg["peers"])
    start = time.monotonic()
    for a in cfg["peers"]:
        host, port = a.rsplit(":", 1)
        h.connect_peer((host, int(port)))
    mapped = {}
    max_connected = 0
    deadline = start + float(cfg["timeout"])
    while len(mapped) < len(want) and time.monotonic() < deadline:
        time.sleep(0.1)
        ses.pop_alerts()
        infos = h.get_peer_info()
        max_connected = max(max_connected, len(infos))
        for p in infos:
            if p.num_pieces > 0:
                addr = "%s:%d" % (p.ip[0], p.ip[1])
                if addr in want:
                    mapped[addr] = p.num_pieces
    elapsed = time.monotonic() - start
    c = session_counters(ses, ["net.sent_bytes", "net.recv_bytes", "net.sent_payload_bytes", "net.recv_payload_bytes"])
    emit({"type": "result", "elapsed": elapsed, "mapped": len(mapped), "pieces": mapped,
          "sent": c["net.sent_bytes"], "recv": c["net.recv_bytes"],
          "sent_payload": c["net.sent_payload_bytes"], "recv_payload": c["net.recv_payload_bytes"],
          "max_connected": max_connected})
    ses.pause()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - reported to the Go side
        emit({"type": "fatal", "msg": "%s: %s" % (type(e).__name__, e)})
        sys.exit(2)
