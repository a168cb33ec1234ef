package mse

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rc4"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"syscall"
	"testing"
	"time"

	amse "github.com/anacrolix/torrent/mse"
)

var skey = bytes.Repeat([]byte{0xab}, 20)

// pair returns both ends of a loopback TCP connection (net.Pipe would
// deadlock: each side writes a step before reading the other's).
func pair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func skeys(keys ...[]byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for _, k := range keys {
			if !yield(k) {
				return
			}
		}
	}
}

func prefer(m Method) Choose {
	return func(p Method) Method {
		if p&m != 0 {
			return m
		}
		if p&RC4 != 0 {
			return RC4
		}
		return p & Plaintext
	}
}

// exchange sends a payload each way over two established streams and
// checks both arrive intact.
func exchange(t *testing.T, a, b io.ReadWriter) {
	t.Helper()
	up := make([]byte, 40000)
	down := make([]byte, 3000)
	rand.Read(up)
	rand.Read(down)
	errc := make(chan error, 1)
	go func() {
		_, err := a.Write(up)
		if err == nil {
			got := make([]byte, len(down))
			if _, err = io.ReadFull(a, got); err == nil && !bytes.Equal(got, down) {
				err = errors.New("initiator read corrupt data")
			}
		}
		errc <- err
	}()
	got := make([]byte, len(up))
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, up) {
		t.Fatalf("receiver read: %v (equal %v)", err, bytes.Equal(got, up))
	}
	if _, err := b.Write(down); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestOursBothSides runs our initiator against our receiver for every
// offer and choice, with an initial payload and pipelined data.
func TestOursBothSides(t *testing.T) {
	tests := []struct {
		provide, prefer, want Method
	}{
		{RC4, RC4, RC4},
		{RC4 | Plaintext, RC4, RC4},
		{RC4 | Plaintext, Plaintext, Plaintext},
		{Plaintext, Plaintext, Plaintext},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("provide %#x prefer %s", uint32(tt.provide), tt.prefer), func(t *testing.T) {
			a, b := pair(t)
			ia := []byte("initial payload: our BitTorrent handshake")
			type res struct {
				st  *Stream
				key []byte
				err error
			}
			rc := make(chan res, 1)
			go func() {
				st, key, err := Receive(b, skeys(bytes.Repeat([]byte{1}, 20), skey), prefer(tt.prefer))
				if err == nil {
					// As Accept does: read the initiator's message (from the
					// IA), answer it.
					got := make([]byte, len(ia))
					if _, err = io.ReadFull(st, got); err == nil && !bytes.Equal(got, ia) {
						err = fmt.Errorf("IA %q", got)
					}
					if err == nil {
						_, err = st.Write([]byte("answer"))
					}
				}
				rc <- res{st, key, err}
			}()
			ist, err := Initiate(a, skey, tt.provide, ia)
			if err != nil {
				t.Fatal(err)
			}
			r := <-rc
			if r.err != nil {
				t.Fatal(r.err)
			}
			if !bytes.Equal(r.key, skey) || ist.Method() != tt.want || r.st.Method() != tt.want {
				t.Fatalf("key %x, methods %s/%s, want %s", r.key, ist.Method(), r.st.Method(), tt.want)
			}
			got := make([]byte, 6)
			if _, err := io.ReadFull(ist, got); err != nil || string(got) != "answer" {
				t.Fatalf("answer %q, %v", got, err)
			}
			exchange(t, ist, r.st)
		})
	}
}

// TestAnacrolixInterop runs each of our sides against
// github.com/anacrolix/torrent/mse, an independent implementation that
// real clients interoperate with.
func TestAnacrolixInterop(t *testing.T) {
	t.Run("we initiate", func(t *testing.T) {
		for _, method := range []Method{RC4, Plaintext} {
			t.Run(method.String(), func(t *testing.T) {
				a, b := pair(t)
				type res struct {
					rw  io.ReadWriter
					err error
				}
				rc := make(chan res, 1)
				go func() {
					rw, _, err := amse.ReceiveHandshake(context.Background(), b, skeys(skey), func(amse.CryptoMethod) amse.CryptoMethod { return amse.CryptoMethod(method) })
					rc <- res{rw, err}
				}()
				st, err := Initiate(a, skey, RC4|Plaintext, []byte("hello"))
				if err != nil {
					t.Fatal(err)
				}
				r := <-rc
				if r.err != nil || st.Method() != method {
					t.Fatalf("%v, method %s", r.err, st.Method())
				}
				got := make([]byte, 5)
				if _, err := io.ReadFull(r.rw, got); err != nil || string(got) != "hello" {
					t.Fatalf("IA %q %v", got, err)
				}
				exchange(t, st, r.rw)
			})
		}
	})
	t.Run("they initiate", func(t *testing.T) {
		for _, method := range []Method{RC4, Plaintext} {
			t.Run(method.String(), func(t *testing.T) {
				a, b := pair(t)
				type res struct {
					rw  io.ReadWriter
					m   amse.CryptoMethod
					err error
				}
				rc := make(chan res, 1)
				go func() {
					rw, m, err := amse.InitiateHandshake(a, skey, []byte("payload"), amse.AllSupportedCrypto)
					rc <- res{rw, m, err}
				}()
				st, key, err := Receive(b, skeys(skey), func(Method) Method { return method })
				if err != nil {
					t.Fatal(err)
				}
				// Waiting for the initiator's next bytes sends the end of
				// our handshake, which it waits for.
				got := make([]byte, 7)
				if _, err := io.ReadFull(st, got); err != nil || string(got) != "payload" {
					t.Fatalf("IA %q %v", got, err)
				}
				next := make(chan error, 1)
				go func() {
					one := make([]byte, 4)
					_, err := io.ReadFull(st, one)
					if err == nil && string(one) != "next" {
						err = fmt.Errorf("read %q", one)
					}
					next <- err
				}()
				r := <-rc
				if r.err != nil || Method(r.m) != method || !bytes.Equal(key, skey) {
					t.Fatalf("%v, method %v", r.err, r.m)
				}
				if _, err := r.rw.Write([]byte("next")); err != nil {
					t.Fatal(err)
				}
				if err := <-next; err != nil {
					t.Fatal(err)
				}
				exchange(t, r.rw, st)
			})
		}
	})
}

// TestRefusals covers the handshakes that must fail, and how.
func TestRefusals(t *testing.T) {
	t.Run("unknown torrent", func(t *testing.T) {
		a, b := pair(t)
		go Initiate(a, skey, RC4, nil)
		_, _, err := Receive(b, skeys(bytes.Repeat([]byte{1}, 20)), prefer(RC4))
		if !errors.Is(err, ErrNoSecret) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("no method in common", func(t *testing.T) {
		a, b := pair(t)
		errc := make(chan error, 1)
		go func() { _, err := Initiate(a, skey, RC4, nil); errc <- err }()
		_, _, err := Receive(b, skeys(skey), func(Method) Method { return Plaintext })
		if !errors.Is(err, ErrNoMethod) {
			t.Fatalf("receiver err %v", err)
		}
		b.Close()
		if err := <-errc; err == nil {
			t.Fatal("initiator succeeded")
		}
	})
	t.Run("peer selects a method we did not offer", func(t *testing.T) {
		a, b := pair(t)
		go amse.ReceiveHandshake(context.Background(), b, skeys(skey), func(amse.CryptoMethod) amse.CryptoMethod { return amse.CryptoMethodPlaintext })
		_, err := Initiate(a, skey, RC4, nil)
		if !errors.Is(err, ErrNoMethod) {
			t.Fatalf("err %v", err)
		}
	})
	for _, tt := range []struct {
		name string
		peer []byte // what the other side sends, then it waits
	}{
		{"zero public key", make([]byte, keyLen+600)},
		{"public key P-1", append(primeMinusOne.FillBytes(make([]byte, keyLen)), make([]byte, 600)...)},
		{"random bytes, no sync", randomBytes(keyLen + 1200)},
	} {
		t.Run(tt.name+"/receiver", func(t *testing.T) {
			a, b := pair(t)
			go a.Write(tt.peer)
			_, _, err := Receive(b, skeys(skey), prefer(RC4))
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("err %v", err)
			}
		})
		t.Run(tt.name+"/initiator", func(t *testing.T) {
			a, b := pair(t)
			go func() {
				io.CopyN(io.Discard, b, keyLen) // Ya; the rest stays unread
				b.Write(tt.peer)
			}()
			_, err := Initiate(a, skey, RC4, nil)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("err %v", err)
			}
		})
	}
	t.Run("peer hangs up", func(t *testing.T) {
		a, b := pair(t)
		go func() { io.CopyN(io.Discard, b, 10); b.Close() }()
		_, err := Initiate(a, skey, RC4, nil)
		if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("err %v", err)
		}
	})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	b[0] |= 0x40 // a public key in range
	return b
}

func BenchmarkHandshake(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				st, _, err := Receive(c, skeys(skey), prefer(RC4))
				if err == nil {
					st.Write([]byte{1})
				}
			}()
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		st, err := Initiate(c, skey, RC4, nil)
		if err != nil {
			b.Fatal(err)
		}
		var one [1]byte
		if _, err := io.ReadFull(st, one[:]); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// TestPowerOfG checks the fixed-base table against a generic
// exponentiation for random and edge-case private keys.
func TestPowerOfG(t *testing.T) {
	keys := [][privateKeyBytes]byte{{}, {19: 1}, {0: 0xff, 19: 0xff}}
	var all [privateKeyBytes]byte
	for i := range all {
		all[i] = 0xff
	}
	keys = append(keys, all)
	for range 200 {
		var k [privateKeyBytes]byte
		rand.Read(k[:])
		keys = append(keys, k)
	}
	for _, k := range keys {
		x := new(big.Int).SetBytes(k[:])
		want := new(big.Int).Exp(generator, x, prime)
		if got := powerOfG(&k); got.Cmp(want) != 0 {
			t.Fatalf("G^%x: got %x, want %x", k, got, want)
		}
	}
}

func BenchmarkKeyPair(b *testing.B) {
	gPowers()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := newKeyPair(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRC4MatchesTheStandardLibrary compares our byte-state RC4 with
// crypto/rc4 over keys of every length class and odd chunkings.
func TestRC4MatchesTheStandardLibrary(t *testing.T) {
	for _, keyLen := range []int{1, 5, 16, 20, 256} {
		key := make([]byte, keyLen)
		rand.Read(key)
		want, _ := rc4.NewCipher(key)
		got := newRC4(key)
		for _, n := range []int{1, 7, 1024, 3, 16 << 10} {
			src := make([]byte, n)
			rand.Read(src)
			a, b := make([]byte, n), bytes.Clone(src)
			want.XORKeyStream(a, src)
			got.XORKeyStream(b, b)
			if !bytes.Equal(a, b) {
				t.Fatalf("key of %d bytes, chunk of %d: keystreams differ", keyLen, n)
			}
		}
	}
}

func BenchmarkRC4(b *testing.B) {
	c := newRC4(skey)
	buf := make([]byte, 16<<10)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		c.XORKeyStream(buf, buf)
	}
}
