package peerwire

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/anacrolix/torrent/types/infohash"
)

func FuzzReadMessage(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 3, 5, 0xff, 0xc0})
	f.Add([]byte{0, 0, 0, 13, 7, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4})
	f.Add([]byte{0, 0, 0, 2, 20, 0, 'd', 'e'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 3, 99, 1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := NewStreamConn(data, 1<<12)
		for i := 0; i < 1000; i++ {
			m, err := c.ReadMessage()
			if err != nil {
				if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrClosed) {
					t.Fatalf("unclassified error %v", err)
				}
				return
			}
			if m.Size < 4 || m.Size > 4+1<<12 {
				t.Fatalf("size %d outside the cap", m.Size)
			}
		}
	})
}

func FuzzParseExtHandshake(f *testing.F) {
	f.Add([]byte("d1:md6:ut_pexi1e11:ut_metadatai2ee1:v13:Transmission4:reqqi512e6:yourip4:\x7f\x00\x00\x011:ei1ee"))
	f.Add([]byte("d1:mi5e1:v3:abce"))
	f.Add([]byte("le"))
	f.Add([]byte("d13:metadata_sizei-5e1:pi99999ee"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseExtHandshake(data)
		// Our scanner reads every dictionary a general bencode decoder
		// decodes in full (into any: anacrolix's reads a list into a map,
		// and "iAe" into raw bytes; BEP 10 says dictionary, and so do we).
		var top any
		if theirs := bencode.Unmarshal(data, &top); theirs == nil && err != nil && len(data) <= maxExtHandshake && len(data) > 0 && data[0] == 'd' {
			t.Fatalf("anacrolix/bencode reads %q, we refuse it: %v", data, err)
		}
		if err != nil {
			return
		}
		if h.Reqq < 0 || h.ListenPort < 0 || h.ListenPort > 65535 || h.MetadataSize < 0 {
			t.Fatalf("out of range field: %+v", h)
		}
		for name, id := range h.Extensions {
			if id < 0 || id > 255 {
				t.Fatalf("extension %q id %d", name, id)
			}
		}
	})
}

// FuzzAcceptMSE feeds arbitrary bytes to the receiving side of a
// handshake, plaintext or MSE: it must fail cleanly, never panic or hang.
func FuzzAcceptMSE(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0x42}, 700))
	f.Add(append([]byte("\x13BitTorrent protocol"), make([]byte, 48)...))
	f.Add(make([]byte, 96))
	f.Fuzz(func(t *testing.T, data []byte) {
		ih := infohash.T{1}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := Accept(ctx, &streamConn{r: bytes.NewReader(data)}, AcceptConfig{
			Known:          func(h infohash.T) bool { return h == ih },
			InfoHash:       func(yield func(infohash.T) bool) { yield(ih) },
			AllowPlaintext: true,
		})
		if err == nil && !bytes.HasPrefix(data, []byte("\x13BitTorrent protocol")) {
			t.Fatal("accepted a handshake that was neither plaintext nor valid MSE")
		}
	})
}

// replayDialer hands every dial a connection that reads data as the peer's
// side of the handshake and discards what we write.
type replayDialer struct{ data []byte }

func (d replayDialer) DialContext(context.Context, string, string) (net.Conn, error) {
	return &streamConn{r: bytes.NewReader(d.data)}, nil
}

// FuzzDialMSE feeds arbitrary bytes to the initiating side of a handshake
// (MSE under require and auto, with auto's plaintext retry): it must end
// with a classified result within its deadline, never panic or hang.
func FuzzDialMSE(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0x42}, 700), false)
	f.Add(make([]byte, 96), true)
	f.Add(append([]byte("\x13BitTorrent protocol"), make([]byte, 48)...), true)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, data []byte, auto bool) {
		policy := PolicyRequire
		if auto {
			policy = PolicyAuto
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := Dial(ctx, netip.MustParseAddrPort("127.0.0.1:6881"), Config{
			InfoHash: infohash.T{1}, Policy: policy, Network: Network{Dialer: replayDialer{data}},
		})
		if err != nil {
			return
		}
		defer c.Close()
		if c.InfoHash != (infohash.T{1}) {
			t.Fatalf("handshake accepted for info hash %x", c.InfoHash)
		}
	})
}

// choppyConn delivers its data in pieces with a read timeout after each
// (a watch lending its connection, a probe's deadline): cuts are the
// positions after which a timeout comes.
type choppyConn struct {
	streamConn
	cuts    []int
	pos     int
	timeout bool
}

func (c *choppyConn) Read(p []byte) (int, error) {
	if c.timeout {
		c.timeout = false
		return 0, os.ErrDeadlineExceeded
	}
	if len(c.cuts) > 0 {
		p = p[:min(len(p), max(c.cuts[0]-c.pos, 1))]
	}
	n, err := c.r.Read(p)
	c.pos += n
	for len(c.cuts) > 0 && c.pos >= c.cuts[0] {
		c.cuts = c.cuts[1:]
		c.timeout = true
	}
	return n, err
}

// FuzzReadMessageTimeouts: read timeouts anywhere in the stream change
// nothing but the timeouts: the same messages come out, then the same end.
func FuzzReadMessageTimeouts(f *testing.F) {
	block, _ := pp.Message{Type: pp.Piece, Index: 1, Begin: 0, Piece: bytes.Repeat([]byte{7}, 3000)}.MarshalBinary()
	f.Add(append(append([]byte{0, 0, 0, 5, 4, 0, 0, 0, 9}, block...), 0, 0, 0, 0), []byte{2, 7, 40, 200})
	f.Add([]byte{0, 0, 3, 0, 0xee}, []byte{1, 3, 255})
	f.Fuzz(func(t *testing.T, data, cutBytes []byte) {
		const maxMsg = 1 << 12
		read := func(c *Conn) (msgs []Message, end error) {
			for range 1000 {
				m, err := c.ReadMessage()
				switch {
				case errors.Is(err, ErrTimeout):
					continue
				case err != nil:
					return msgs, err
				}
				msgs = append(msgs, m)
			}
			return msgs, nil
		}
		want, wantEnd := read(NewStreamConn(data, maxMsg))
		cc := &choppyConn{streamConn: streamConn{r: bytes.NewReader(data)}}
		pos := 0
		for _, b := range cutBytes {
			pos += int(b)
			cc.cuts = append(cc.cuts, pos)
		}
		got, gotEnd := read(newConn(cc, cc, MethodPlaintext, maxMsg))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("with timeouts at %v: %d messages, without: %d", cc.cuts, len(got), len(want))
		}
		if errors.Is(gotEnd, ErrProtocol) != errors.Is(wantEnd, ErrProtocol) || errors.Is(gotEnd, ErrClosed) != errors.Is(wantEnd, ErrClosed) {
			t.Fatalf("ends with %v, without timeouts %v", gotEnd, wantEnd)
		}
	})
}
