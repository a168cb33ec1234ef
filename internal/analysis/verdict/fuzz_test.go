package verdict

import (
	"encoding/binary"
	"testing"

	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

var fuzzTor = estimate.Torrent{NumPieces: 20, PieceLength: 1 << 16, TotalLength: 20<<16 - 99}

// decodeInput turns fuzz bytes into announces and wire evidence for up to 4
// peers: 8-byte records of a type, a peer, a 16-bit time in seconds and a
// 32-bit value.
func decodeInput(data []byte) Input {
	in := Input{Torrent: fuzzTor}
	for p := byte(0); p < 4; p++ {
		in.Peers = append(in.Peers, WirePeer{Addr: addr(p + 1), PeerIDs: [][20]byte{pid(p + 1)}})
	}
	events := []reported.Event{reported.EventNone, reported.EventStarted, reported.EventCompleted, reported.EventStopped}
	for k := 0; len(data) >= 8 && k < 400; k++ {
		typ, p := data[0]%5, data[1]%4
		tm := at(float64(binary.BigEndian.Uint16(data[2:4])))
		v := binary.BigEndian.Uint32(data[4:8])
		data = data[8:]
		w := &in.Peers[p]
		switch typ {
		case 0:
			in.Announces = append(in.Announces, reported.Announce{At: tm, PeerID: pid(p + 1), IP: addr(p + 1).Addr(), Port: addr(p + 1).Port(),
				Uploaded: int64(v%4096) << 16, Downloaded: int64(v>>12%4096) << 16, Left: int64(int32(v)) << 8, Event: events[v>>30], Passkey: "pk"})
		case 1:
			bf := bitfield.New(fuzzTor.NumPieces)
			for i := 0; i < fuzzTor.NumPieces; i++ {
				if v&(1<<i) != 0 {
					bf.Set(i)
				}
			}
			w.Observations = append(w.Observations, timeline.Observation{At: tm, Kind: timeline.KindBitfield, Pieces: bf})
		case 2:
			w.Observations = append(w.Observations, timeline.Observation{At: tm, Kind: timeline.Kind(v % 12), Piece: int(v>>8) % 25})
		case 3:
			w.Probes = append(w.Probes, estimate.Sample{At: tm, BytesPerSec: float64(v % 100000), Spread: float64(v >> 20), Bytes: int64(v % 3000000)})
		case 4:
			w.BadPieces = append(w.BadPieces, BadPiece{At: tm, Piece: int(v%30) - 5})
		}
	}
	return in
}

func FuzzJudge(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x40\x00\x00\x00\x01\x00\x00\x10\x00\x00\x00\xff\x00\x00\x07\x08\x00\x10\x00\x00"))
	f.Add([]byte("\x02\x01\x00\x01\x00\x00\x00\x08\x03\x01\x00\x02\x00\x00\x30\x00\x04\x01\x00\x03\x00\x00\x00\x07"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := decodeInput(data)
		rep, err := Judge(in, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, rep)
		total := 0
		for _, n := range rep.Summary.Counts {
			total += n
		}
		if total != len(rep.Verdicts) {
			t.Fatalf("counts %v for %d verdicts", rep.Summary.Counts, len(rep.Verdicts))
		}
	})
}
