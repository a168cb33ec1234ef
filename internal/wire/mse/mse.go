// Package mse is Message Stream Encryption (MSE, also called Protocol
// Encryption), the obfuscated key exchange BitTorrent clients run before the
// BitTorrent handshake: a 768-bit Diffie-Hellman exchange, then RC4 (the
// first 1,024 bytes of keystream dropped) or plaintext, as specified on the
// Vuze wiki ("Message Stream Encryption") that libtorrent, Transmission and
// qBittorrent follow.
//
// It is ours rather than github.com/anacrolix/torrent/mse (whose codecs the
// rest of the wire layer uses, and which the tests use as an independent
// implementation): that package starts a goroutine for every read and
// every write of the handshake (to honour a context), reads the peer's
// padding 8 bytes at a time, and writes each field in its own segment, so a
// handshake costs hundreds of goroutines, allocations and system calls. An
// auditor that probes thousands of peers a minute is bound by exactly that
// cost (issue "Crawler-scale efficiency"). This one reads through one
// buffer, sends each step in one write, takes the caller's deadlines from
// the socket instead of a goroutine, and hands back a stream that decrypts
// in place. Interoperation is tested against anacrolix's implementation in
// both directions and against real clients in internal/observation/probe.
//
// Everything read is hostile: padding and the initial payload are bounded,
// a peer that never synchronises is refused after the bytes the
// specification allows, and no error panics.
package mse

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/bits"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
)

// Method is a crypto method bit of crypto_provide and crypto_select.
type Method uint32

// The crypto methods.
const (
	Plaintext Method = 1
	RC4       Method = 2
)

// String names the method.
func (m Method) String() string {
	switch m {
	case Plaintext:
		return "plaintext"
	case RC4:
		return "rc4"
	}
	return fmt.Sprintf("method %#x", uint32(m))
}

const (
	keyLen    = 96  // bytes of Ya, Yb and S
	maxPad    = 512 // PadA, PadB, PadC and PadD are at most this long
	vcLen     = 8
	hashLen   = sha1.Size
	dropBytes = 1024 // RC4 keystream discarded before use
	// MaxInitialPayload bounds the IA an initiator may send us. Clients
	// put their BitTorrent handshake there (68 bytes); nothing needs more.
	MaxInitialPayload = 16 << 10
)

// The specification's 768-bit safe prime and generator 2.
var (
	prime = func() *big.Int {
		p, _ := new(big.Int).SetString("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563", 16)
		return p
	}()
	primeMinusOne = new(big.Int).Sub(prime, big.NewInt(1))
	generator     = big.NewInt(2)
)

// Errors callers tell apart; every error from Initiate and Receive wraps one
// of them or an error of the underlying connection.
var (
	// ErrProtocol: the peer's bytes break the specification (no
	// synchronisation within the allowed padding, a bad VC, a public key out
	// of range, an oversized IA).
	ErrProtocol = errors.New("MSE protocol error")
	// ErrNoSecret: the initiator asked for a torrent (SKEY) we do not know.
	ErrNoSecret = errors.New("MSE: no known torrent matches the initiator's hash")
	// ErrNoMethod: the two sides share no crypto method.
	ErrNoMethod = errors.New("MSE: no crypto method in common")
)

// keyPair is one side's Diffie-Hellman secret and public key.
type keyPair struct {
	x big.Int
	y [keyLen]byte
}

// privateKeyBytes is the private key's length: 160 bits, as the
// specification recommends and common clients use.
const privateKeyBytes = 20

// newKeyPair draws a private key X and computes the public key G^X mod P.
func newKeyPair() (*keyPair, error) {
	var xb [privateKeyBytes]byte
	if _, err := rand.Read(xb[:]); err != nil {
		return nil, fmt.Errorf("MSE private key: %w", err)
	}
	kp := &keyPair{}
	kp.x.SetBytes(xb[:])
	powerOfG(&xb).FillBytes(kp.y[:])
	return kp, nil
}

// gPowers holds G^(v·256^i) mod P for each byte position i of a private key
// and each byte value v, so that G^X is a product of one entry per byte of
// X: 20 modular multiplications instead of the 160 squarings and ~40
// multiplications of a generic exponentiation, which made key generation
// half of a handshake's arithmetic. This is the textbook fixed-base
// windowed method; the table (480 KiB of words) is built on first use, in
// a few milliseconds. It is not constant-time; neither is math/big, and
// MSE is obfuscation, not a secure channel.
var gPowers = sync.OnceValue(func() []big.Word {
	t := make([]big.Word, privateKeyBytes*256*entryWords)
	var prod, base, cur, a, b big.Int
	for i := range privateKeyBytes {
		if i == 0 {
			base.Set(generator)
		} else { // G^(256^i) = G^(255·256^(i-1)) · G^(256^(i-1))
			prod.Mul(entry(&a, t, i-1, 255), entry(&b, t, i-1, 1))
			base.Mod(&prod, prime)
		}
		copy(t[i*256*entryWords:], big.NewInt(1).Bits())
		cur.Set(&base)
		for v := 1; v < 256; v++ {
			copy(t[(i*256+v)*entryWords:], cur.Bits())
			prod.Mul(&cur, &base)
			cur.Mod(&prod, prime)
		}
	}
	return t
})

// entryWords is the words of one table entry: a number below P.
const entryWords = (keyLen*8 + bits.UintSize - 1) / bits.UintSize

// entry makes e a read-only view of the table's entry for byte position i
// and value v, and returns it.
func entry(e *big.Int, t []big.Word, i, v int) *big.Int {
	at := (i*256 + v) * entryWords
	return e.SetBits(t[at : at+entryWords : at+entryWords])
}

// powerOfG is G^X mod P for the big-endian private key xb.
func powerOfG(xb *[privateKeyBytes]byte) *big.Int {
	t := gPowers()
	acc := new(big.Int).SetInt64(1)
	var prod, quo, e big.Int
	for i := range privateKeyBytes {
		if v := int(xb[privateKeyBytes-1-i]); v != 0 {
			prod.Mul(acc, entry(&e, t, i, v))
			quo.QuoRem(&prod, prime, acc)
		}
	}
	return acc
}

// secret is S = Y^X mod P for the peer's public key y, which must lie in
// (1, P-1): any other value makes S guessable and no honest peer sends it.
func (kp *keyPair) secret(y []byte) ([keyLen]byte, error) {
	var s [keyLen]byte
	var Y big.Int
	Y.SetBytes(y)
	if Y.Cmp(big.NewInt(1)) <= 0 || Y.Cmp(primeMinusOne) >= 0 {
		return s, fmt.Errorf("%w: public key out of range", ErrProtocol)
	}
	var S big.Int
	S.Exp(&Y, &kp.x, prime)
	S.FillBytes(s[:])
	return s, nil
}

func hash(parts ...[]byte) (sum [hashLen]byte) {
	h := sha1.New()
	for _, p := range parts {
		h.Write(p)
	}
	h.Sum(sum[:0])
	return sum
}

// cipher is RC4 keyed with HASH(name, S, SKEY), its first 1,024 bytes of
// keystream dropped.
func cipher(name string, s [keyLen]byte, skey []byte) *rc4Cipher {
	k := hash([]byte(name), s[:], skey)
	c := newRC4(k[:])
	var drop [dropBytes]byte
	c.XORKeyStream(drop[:], drop[:])
	return c
}

// padding returns n random bytes, n drawn uniformly from [0, max].
func padding(dst []byte, max int) []byte {
	n := mrand.IntN(max + 1)
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	_, _ = rand.Read(dst[start:])
	return dst
}

// reader reads the handshake through one buffer so that scanning the
// peer's padding costs a few reads, not one per byte; what it read beyond
// the handshake is handed to the Stream.
type reader struct {
	r    io.Reader
	buf  []byte
	head int // bytes of buf consumed
	tail int // bytes of buf filled
}

// handshakeBuf holds what a handshake may read before the payload: both
// sides' public keys, paddings, hashes and headers, and some payload the
// peer pipelined behind them.
const handshakeBuf = keyLen + maxPad + 2*hashLen + vcLen + 6 + maxPad + 2 + 256

var bufPool = sync.Pool{New: func() any { b := make([]byte, handshakeBuf); return &b }}

func newReader(r io.Reader) *reader {
	return &reader{r: r, buf: *bufPool.Get().(*[]byte)}
}

// release returns the buffer to the pool and the unread bytes (copied).
func (r *reader) release() []byte {
	rest := bytes.Clone(r.buf[r.head:r.tail])
	b := r.buf
	r.buf = nil
	bufPool.Put(&b)
	return rest
}

// fill reads until at least n unread bytes are buffered.
func (r *reader) fill(n int) error {
	if r.tail-r.head >= n {
		return nil
	}
	if r.head+n > len(r.buf) {
		copy(r.buf, r.buf[r.head:r.tail])
		r.tail -= r.head
		r.head = 0
	}
	for r.tail-r.head < n {
		m, err := r.r.Read(r.buf[r.tail:])
		r.tail += m
		if r.tail-r.head >= n {
			return nil
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if m == 0 {
			return io.ErrNoProgress
		}
	}
	return nil
}

// next consumes n bytes (n ≤ len(buf)); the slice is valid until the next call.
func (r *reader) next(n int) ([]byte, error) {
	if err := r.fill(n); err != nil {
		return nil, err
	}
	b := r.buf[r.head : r.head+n]
	r.head += n
	return b, nil
}

// sync consumes bytes up to and including pattern, which must start within
// maxSkip bytes of the current position.
func (r *reader) sync(pattern []byte, maxSkip int, what string) error {
	window := maxSkip + len(pattern)
	for want := len(pattern); ; want = r.tail - r.head + 1 {
		if err := r.fill(want); err != nil {
			return fmt.Errorf("looking for %s: %w", what, err)
		}
		avail := r.buf[r.head:r.tail]
		if len(avail) > window {
			avail = avail[:window]
		}
		if i := bytes.Index(avail, pattern); i >= 0 {
			r.head += i + len(pattern)
			return nil
		}
		if len(avail) == window {
			return fmt.Errorf("%w: no %s within %d bytes of padding", ErrProtocol, what, maxSkip)
		}
	}
}

// Stream is the connection after the handshake: reads decrypt in place,
// writes encrypt through a pooled buffer. Reads must come from one
// goroutine and writes from one (they may be different).
type Stream struct {
	rw      io.ReadWriter
	pending []byte // raw bytes read during the handshake, not yet returned
	ia      []byte // the initiator's payload, already decrypted (receiver)
	out     []byte // the end of our handshake, sent with the first Write…
	outMu   sync.Mutex
	outSent atomic.Bool // …or before the first Read that would wait for the peer
	dec     *rc4Cipher
	enc     *rc4Cipher
	method  Method
}

// Method is the crypto method the handshake selected.
func (s *Stream) Method() Method { return s.method }

func (s *Stream) Read(p []byte) (int, error) {
	if len(s.ia) > 0 {
		n := copy(p, s.ia)
		s.ia = s.ia[n:]
		return n, nil
	}
	var n int
	var err error
	if len(s.pending) == 0 && !s.outSent.Load() {
		// The peer may be waiting for the end of our handshake.
		if err := s.flushOut(); err != nil {
			return 0, err
		}
	}
	if len(s.pending) > 0 {
		n = copy(p, s.pending)
		s.pending = s.pending[n:]
		if len(s.pending) == 0 {
			s.pending = nil
		}
	} else {
		n, err = s.rw.Read(p)
	}
	if s.dec != nil && n > 0 {
		s.dec.XORKeyStream(p[:n], p[:n])
	}
	return n, err
}

var writePool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// flushOut sends the end of our handshake if no Write has yet.
func (s *Stream) flushOut() error {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if s.outSent.Load() {
		return nil
	}
	if _, err := s.rw.Write(s.out); err != nil {
		return fmt.Errorf("MSE: writing crypto_select: %w", err)
	}
	s.out = nil
	s.outSent.Store(true)
	return nil
}

func (s *Stream) Write(p []byte) (int, error) {
	if !s.outSent.Load() {
		s.outMu.Lock()
		defer s.outMu.Unlock()
	}
	if s.enc == nil && s.out == nil {
		return s.rw.Write(p)
	}
	bp := writePool.Get().(*[]byte)
	defer writePool.Put(bp)
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), 16<<10)]
		buf := append((*bp)[:0], s.out...)
		head := len(buf)
		buf = append(buf, chunk...)
		if s.enc != nil {
			s.enc.XORKeyStream(buf[head:], buf[head:])
		}
		*bp = buf
		n, err := s.rw.Write(buf)
		if err != nil {
			// The keystream moved past bytes that were not sent: the
			// stream cannot be used again.
			return written + max(n-head, 0), err
		}
		if s.out != nil {
			s.out = nil
			s.outSent.Store(true)
		}
		written += n - head
		p = p[len(chunk):]
	}
	return written, nil
}

// Initiate runs the initiator's side of the handshake on rw for the torrent
// whose info hash is skey, offering the methods in provide, and sends ia
// (the BitTorrent handshake, usually) as the initial payload, which saves a
// round trip. Deadlines are the caller's: set them on the connection.
func Initiate(rw io.ReadWriter, skey []byte, provide Method, ia []byte) (*Stream, error) {
	if len(ia) > MaxInitialPayload {
		return nil, fmt.Errorf("MSE: initial payload of %d bytes (limit %d)", len(ia), MaxInitialPayload)
	}
	kp, err := newKeyPair()
	if err != nil {
		return nil, err
	}
	// 1 A->B: Ya, PadA
	out := make([]byte, 0, keyLen+maxPad+2*hashLen+vcLen+8+len(ia))
	out = append(out, kp.y[:]...)
	out = padding(out, maxPad)
	if _, err := rw.Write(out); err != nil {
		return nil, fmt.Errorf("MSE: writing Ya: %w", err)
	}
	r := newReader(rw)
	rest, err := initiate(r, rw, kp, skey, provide, ia, out[:0])
	if err != nil {
		r.release()
		return nil, err
	}
	rest.pending = r.release()
	return rest, nil
}

func initiate(r *reader, w io.Writer, kp *keyPair, skey []byte, provide Method, ia, out []byte) (*Stream, error) {
	// 2 B->A: Yb, PadB
	yb, err := r.next(keyLen)
	if err != nil {
		return nil, fmt.Errorf("MSE: reading Yb: %w", err)
	}
	s, err := kp.secret(yb)
	if err != nil {
		return nil, err
	}
	// 3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
	// ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
	req1 := hash([]byte("req1"), s[:])
	req2 := hash([]byte("req2"), skey)
	req3 := hash([]byte("req3"), s[:])
	for i := range req2 {
		req2[i] ^= req3[i]
	}
	out = append(out, req1[:]...)
	out = append(out, req2[:]...)
	start := len(out)
	out = append(out, make([]byte, vcLen)...)
	out = binary.BigEndian.AppendUint32(out, uint32(provide))
	out = binary.BigEndian.AppendUint16(out, 0) // PadC: PadA already varies the length
	out = binary.BigEndian.AppendUint16(out, uint16(len(ia)))
	out = append(out, ia...)
	enc := cipher("keyA", s, skey)
	enc.XORKeyStream(out[start:], out[start:])
	if _, err := w.Write(out); err != nil {
		return nil, fmt.Errorf("MSE: writing the crypto offer: %w", err)
	}
	// 4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
	dec := cipher("keyB", s, skey)
	var evc [vcLen]byte
	dec.XORKeyStream(evc[:], evc[:])
	if err := r.sync(evc[:], maxPad, "the peer's verification constant"); err != nil {
		return nil, fmt.Errorf("MSE: %w", err)
	}
	head, err := r.next(6)
	if err != nil {
		return nil, fmt.Errorf("MSE: reading crypto_select: %w", err)
	}
	dec.XORKeyStream(head, head)
	selected := Method(binary.BigEndian.Uint32(head))
	padD := int(binary.BigEndian.Uint16(head[4:]))
	if padD > maxPad {
		return nil, fmt.Errorf("%w: PadD of %d bytes", ErrProtocol, padD)
	}
	if selected != Plaintext && selected != RC4 || selected&provide == 0 {
		return nil, fmt.Errorf("%w: the peer selected %s, we offered %#x", ErrNoMethod, selected, uint32(provide))
	}
	pad, err := r.next(padD)
	if err != nil {
		return nil, fmt.Errorf("MSE: reading PadD: %w", err)
	}
	dec.XORKeyStream(pad, pad)
	st := &Stream{rw: struct {
		io.Reader
		io.Writer
	}{r.r, w}, method: selected}
	st.outSent.Store(true)
	if selected == RC4 {
		st.dec, st.enc = dec, enc
	}
	return st, nil
}

// Choose picks the method to use from the initiator's crypto_provide; 0
// refuses the handshake.
type Choose func(provided Method) Method

// Receive runs the receiver's side of the handshake on rw (whose first
// bytes are the initiator's Ya). skeys yields the info hashes we serve until
// the callback returns false; the one the initiator asked for is returned
// with the stream, whose first reads return the initiator's payload.
// Deadlines are the caller's: set them on the connection.
func Receive(rw io.ReadWriter, skeys func(yield func(skey []byte) bool), choose Choose) (*Stream, []byte, error) {
	r := newReader(rw)
	st, skey, err := receive(r, rw, skeys, choose)
	if err != nil {
		r.release()
		return nil, nil, err
	}
	st.pending = r.release()
	return st, skey, nil
}

func receive(r *reader, w io.Writer, skeys func(yield func(skey []byte) bool), choose Choose) (*Stream, []byte, error) {
	// 1 A->B: Ya, PadA
	ya, err := r.next(keyLen)
	if err != nil {
		return nil, nil, fmt.Errorf("MSE: reading Ya: %w", err)
	}
	kp, err := newKeyPair()
	if err != nil {
		return nil, nil, err
	}
	s, err := kp.secret(ya)
	if err != nil {
		return nil, nil, err
	}
	// 2 B->A: Yb, PadB
	out := make([]byte, 0, keyLen+maxPad)
	out = append(out, kp.y[:]...)
	out = padding(out, maxPad)
	if _, err := w.Write(out); err != nil {
		return nil, nil, fmt.Errorf("MSE: writing Yb: %w", err)
	}
	// 3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S), ...
	req1 := hash([]byte("req1"), s[:])
	if err := r.sync(req1[:], maxPad, "the initiator's req1 hash"); err != nil {
		return nil, nil, fmt.Errorf("MSE: %w", err)
	}
	x, err := r.next(hashLen)
	if err != nil {
		return nil, nil, fmt.Errorf("MSE: reading the torrent hash: %w", err)
	}
	req3 := hash([]byte("req3"), s[:])
	for i := range req3 {
		req3[i] ^= x[i]
	}
	var skey []byte
	skeys(func(k []byte) bool {
		if hash([]byte("req2"), k) == req3 {
			skey = bytes.Clone(k)
			return false
		}
		return true
	})
	if skey == nil {
		return nil, nil, ErrNoSecret
	}
	dec := cipher("keyA", s, skey)
	head, err := r.next(vcLen + 6)
	if err != nil {
		return nil, nil, fmt.Errorf("MSE: reading the crypto offer: %w", err)
	}
	dec.XORKeyStream(head, head)
	if !bytes.Equal(head[:vcLen], make([]byte, vcLen)) {
		return nil, nil, fmt.Errorf("%w: bad verification constant", ErrProtocol)
	}
	provided := Method(binary.BigEndian.Uint32(head[vcLen:]))
	padC := int(binary.BigEndian.Uint16(head[vcLen+4:]))
	if padC > maxPad {
		return nil, nil, fmt.Errorf("%w: PadC of %d bytes", ErrProtocol, padC)
	}
	pad, err := r.next(padC)
	if err != nil {
		return nil, nil, fmt.Errorf("MSE: reading PadC: %w", err)
	}
	dec.XORKeyStream(pad, pad)
	l, err := r.next(2)
	if err != nil {
		return nil, nil, fmt.Errorf("MSE: reading len(IA): %w", err)
	}
	dec.XORKeyStream(l, l)
	iaLen := int(binary.BigEndian.Uint16(l))
	if iaLen > MaxInitialPayload {
		return nil, nil, fmt.Errorf("%w: initial payload of %d bytes (limit %d)", ErrProtocol, iaLen, MaxInitialPayload)
	}
	ia := make([]byte, iaLen)
	if err := r.readFull(ia); err != nil {
		return nil, nil, fmt.Errorf("MSE: reading the initial payload: %w", err)
	}
	dec.XORKeyStream(ia, ia)
	selected := choose(provided & (Plaintext | RC4))
	if selected != Plaintext && selected != RC4 || selected&provided == 0 {
		return nil, nil, fmt.Errorf("%w: the initiator offered %#x", ErrNoMethod, uint32(provided))
	}
	// 4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD)
	enc := cipher("keyB", s, skey)
	reply := make([]byte, vcLen, vcLen+6)
	reply = binary.BigEndian.AppendUint32(reply, uint32(selected))
	reply = binary.BigEndian.AppendUint16(reply, 0)
	enc.XORKeyStream(reply, reply)
	st := &Stream{rw: struct {
		io.Reader
		io.Writer
	}{r.r, w}, ia: ia, method: selected}
	if len(ia) > 0 {
		// The initiator sent its first message already: our reply can
		// wait for our first one (its answer, usually) and share its write.
		st.out = reply
	} else if _, err := w.Write(reply); err != nil {
		return nil, nil, fmt.Errorf("MSE: writing crypto_select: %w", err)
	} else {
		st.outSent.Store(true)
	}
	if selected == RC4 {
		st.dec, st.enc = dec, enc
	}
	return st, skey, nil
}

// readFull fills p from the buffer, then from the connection.
func (r *reader) readFull(p []byte) error {
	n := copy(p, r.buf[r.head:r.tail])
	r.head += n
	if n < len(p) {
		if _, err := io.ReadFull(r.r, p[n:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}
