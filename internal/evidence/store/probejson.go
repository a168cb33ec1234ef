package store

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"sync"
)

// A probe's record (its JSON) is stored deflated against a preset
// dictionary: a typical record, so that only what differs from it takes
// room. It takes about a fifth of the plain JSON. The first byte says which
// dictionary; a record written with one stays readable when another is
// added.

// probeDict1 is dictionary 1: the fields of probe.Result.ForStore in
// order, with typical values.
const probeDict1 = `{"duration_ms":250.125,"tcp_connected":true,"handshake_ms":3.125,"fast_extension":true,"extension_protocol":true,` +
	`"extension_handshake":{"v":"libtorrent/2.0.8.0","reqq":500,"m":{"lt_donthave":7,"share_mode":8,"upload_only":3,"ut_holepunch":4,"ut_metadata":2,"ut_pex":1},` +
	`"yourip":"127.0.0.1","e":true,"metadata_size":1000,"p":6881},` +
	`"pieces_have":1000,"pieces_total":2000,"seeder":false,"bitfield_kind":"bitfield","snapshot_at_ms":3.25,"choked":false,"unchoke_ms":3.5,` +
	`"allowed_fast":10,"ttfb_ms":0.5,"bytes_downloaded":2097152,"throughput_bytes_per_sec":8400000.5,"throughput_spread":0.005,"throughput_samples":8,` +
	`"pieces_verified":128,"pieces_failed":0,"failed_pieces":[1,2],"rejected_requests":1,"wire_bytes_in":2099567,"wire_bytes_out":2945,` +
	`"unknown_messages":1,"keepalives":1,"outcome":"ok","error":"timed out"}` +
	`{"outcome":"choked","error":"peer kept us choked"}{"outcome":"bad_data"}{"seeder":true,"bitfield_kind":"have_all"}`

const probeDictVersion = 1

var probeWriters = sync.Pool{New: func() any {
	w, err := flate.NewWriterDict(io.Discard, flate.BestCompression, []byte(probeDict1))
	if err != nil {
		panic(err) // a valid level never fails
	}
	return w
}}

// deflateProbe compresses a probe's JSON record.
func deflateProbe(record []byte) []byte {
	var buf bytes.Buffer
	buf.WriteByte(probeDictVersion)
	w := probeWriters.Get().(*flate.Writer)
	defer probeWriters.Put(w)
	w.Reset(&buf)
	w.Write(record) // a bytes.Buffer does not fail
	w.Close()
	return buf.Bytes()
}

var errProbeRecord = errors.New("malformed stored probe record")

// inflateProbe reads a record deflateProbe wrote, at most maxJSON bytes.
func inflateProbe(data []byte) ([]byte, error) {
	if len(data) == 0 || data[0] != probeDictVersion {
		return nil, fmt.Errorf("%w: unknown dictionary", errProbeRecord)
	}
	r := flate.NewReaderDict(bytes.NewReader(data[1:]), []byte(probeDict1))
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, maxJSON+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errProbeRecord, err)
	}
	if len(out) > maxJSON {
		return nil, fmt.Errorf("%w: over %d bytes", errProbeRecord, maxJSON)
	}
	return out, nil
}
