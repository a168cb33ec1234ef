#!/bin/sh
# Regenerates the committed .torrent fixtures. Not run by the tests.
# Needs mktorrent and Debian's python3-libtorrent (/usr/bin/python3).
# Payload bytes follow the formula in payload() of torrentmeta_test.go:
# byte i of a file = (i*31 + i/251 + seed) mod 256.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

/usr/bin/python3 - <<'PY'
import os
def payload(n, seed):
    return bytes(((i*31 + i//251 + seed) & 0xff) for i in range(n))
open("payload.bin", "wb").write(payload(100000, 0))
os.makedirs("multi/sub")
open("multi/a.bin", "wb").write(payload(50000, 1))
open("multi/sub/b.bin", "wb").write(payload(30000, 2))
PY

mktorrent -d -p -l 15 -a http://127.0.0.1:6969/announce -o "$here/mktorrent-single.torrent" payload.bin
mktorrent -d -l 15 -a http://127.0.0.1:6969/announce,http://127.0.0.2:6969/announce \
	-a udp://127.0.0.1:6969 -o "$here/mktorrent-multi.torrent" multi

/usr/bin/python3 - "$here" <<'PY'
import sys, libtorrent as lt
here = sys.argv[1]
def make(flags, out):
    fs = lt.file_storage()
    lt.add_files(fs, "multi")
    ct = lt.create_torrent(fs, 16384, flags=flags)
    ct.add_tracker("http://127.0.0.1:6969/announce")
    lt.set_piece_hashes(ct, ".")
    e = ct.generate()
    e.pop(b"creation date", None)
    open(out, "wb").write(lt.bencode(e))
    ti = lt.torrent_info(out)
    print(out, "v1", ti.info_hashes().v1, "v2", ti.info_hashes().v2)
make(0, here + "/hybrid.torrent")
make(lt.create_torrent.v2_only, here + "/v2only.torrent")
PY
