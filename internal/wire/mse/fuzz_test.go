package mse

import (
	"bytes"
	"io"
	"testing"
)

// replay reads a fixed byte string as the peer's side and discards what is
// written to it.
type replay struct{ r *bytes.Reader }

func (p replay) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p replay) Write(b []byte) (int, error) { return len(b), nil }

// FuzzReceive feeds arbitrary bytes to the receiving side: it must end
// with an error (no valid initiator can be replayed, the key exchange being
// fresh), never panic, and read a bounded amount.
func FuzzReceive(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0x42}, 700))
	f.Add(make([]byte, 96))
	f.Add(append(bytes.Repeat([]byte{0x7f}, keyLen), make([]byte, 1200)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		_, _, err := Receive(replay{r}, skeys(skey), prefer(RC4))
		if err == nil {
			t.Fatal("a replayed handshake succeeded")
		}
		if read := len(data) - r.Len(); read > handshakeBuf+MaxInitialPayload {
			t.Fatalf("read %d bytes", read)
		}
	})
}

// FuzzInitiate is the same for the initiating side.
func FuzzInitiate(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0x42}, 700))
	f.Add(make([]byte, 96))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		st, err := Initiate(replay{r}, skey, RC4|Plaintext, []byte("ia"))
		if err == nil {
			// Only possible if the replay matched our fresh keystream.
			_, _ = io.Copy(io.Discard, st)
			t.Fatal("a replayed handshake succeeded")
		}
		if read := len(data) - r.Len(); read > handshakeBuf {
			t.Fatalf("read %d bytes", read)
		}
	})
}
