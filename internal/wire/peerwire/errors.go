package peerwire

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Sentinel errors. Every error this package returns wraps one of them (and
// the underlying cause), so callers classify failures with errors.Is.
var (
	// ErrRefused: the TCP connection was refused or reset before any
	// BitTorrent byte was exchanged.
	ErrRefused = errors.New("connection refused")
	// ErrTimeout: a deadline passed while connecting, handshaking or waiting
	// for a message.
	ErrTimeout = errors.New("timed out")
	// ErrHandshake: the peer answered, but not with a valid BitTorrent
	// handshake for our torrent (wrong protocol string, info hash, or an MSE
	// exchange that failed).
	ErrHandshake = errors.New("handshake failed")
	// ErrEncryptionRequired: the peer dropped our plaintext handshake, which
	// is how peers that require encryption behave.
	ErrEncryptionRequired = errors.New("peer requires encryption")
	// ErrPlaintextRefused: the peer (or its MSE negotiation) would only speak
	// plaintext while our policy requires RC4.
	ErrPlaintextRefused = errors.New("peer refused RC4 encryption")
	// ErrProtocol: the peer broke the wire protocol after the handshake
	// (oversized or malformed message, bad bitfield, unrequested data).
	ErrProtocol = errors.New("protocol error")
	// ErrClosed: the peer closed the connection after the handshake.
	ErrClosed = errors.New("connection closed by peer")
	// ErrConnected marks a failure that came after the TCP connection was
	// established: something listens there, but did not complete a
	// BitTorrent handshake (errors.Is finds it next to the failure's kind).
	ErrConnected = errors.New("TCP connected")
)

// classify maps a low-level I/O error to one of the sentinels (keeping the
// original error in the chain). fallback is used for unrecognised errors.
func classify(err error, fallback error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrRefused), errors.Is(err, ErrTimeout), errors.Is(err, ErrHandshake),
		errors.Is(err, ErrEncryptionRequired), errors.Is(err, ErrPlaintextRefused),
		errors.Is(err, ErrProtocol), errors.Is(err, ErrClosed):
		return err
	case isTimeout(err):
		return &wireError{kind: ErrTimeout, err: err}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &wireError{kind: ErrRefused, err: err}
	default:
		return &wireError{kind: fallback, err: err}
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isDrop reports whether err means the peer hung up on us (EOF or reset),
// which during a handshake is how peers reject a policy they dislike.
func isDrop(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

// wireError pairs a sentinel kind with the underlying cause.
type wireError struct {
	kind error
	err  error
}

func (e *wireError) Error() string { return e.kind.Error() + ": " + e.err.Error() }

func (e *wireError) Unwrap() []error { return []error{e.kind, e.err} }

func newErr(kind error, err error) error { return &wireError{kind: kind, err: err} }
