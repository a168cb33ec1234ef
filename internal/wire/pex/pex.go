// Package pex decodes Peer Exchange messages (BEP 11, the ut_pex extension
// message payload) into bounded lists of added and dropped peers with their
// flags. It is a pure parser: the peer connection hands it a payload, it
// returns addresses and never touches the network.
//
// The bencode layer is github.com/anacrolix/torrent/bencode. The compact
// address lists are decoded with package compact rather than through
// peer_protocol.PexMsg because PexMsg decodes every entry of an arbitrarily
// long list into reflection-built net.IP slices before the caller can bound
// it; an auditor facing hostile peers wants at most MaxEntries per list and a
// count of what was ignored. A list of bad length is an error wrapping
// compact.ErrLength.
package pex

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/anacrolix/torrent/bencode"

	"github.com/swarmaudit/swarmaudit/internal/wire/compact"
)

// ExtensionName is the name of the extension in the BEP 10 handshake "m"
// dictionary.
const ExtensionName = "ut_pex"

// MaxEntries is the number of entries honoured per list (added, added6,
// dropped, dropped6) of one message. BEP 11 says a message should carry at
// most 50 added and 50 dropped peers; libtorrent sends up to 100. Entries
// beyond the limit are counted in Message.Truncated and ignored.
const MaxEntries = 200

// Flags are the per-peer flag bits of "added.f"/"added6.f" (BEP 11).
type Flags uint8

// The BEP 11 flag bits.
const (
	PrefersEncryption Flags = 0x01
	Seed              Flags = 0x02 // seed or upload-only
	UTP               Flags = 0x04 // supports uTP
	Holepunch         Flags = 0x08 // supports ut_holepunch
	Reachable         Flags = 0x10 // the sender reached it by an outgoing connection
)

var flagNames = []struct {
	f    Flags
	name string
}{
	{PrefersEncryption, "encryption"},
	{Seed, "seed"},
	{UTP, "utp"},
	{Holepunch, "holepunch"},
	{Reachable, "reachable"},
}

// Names returns the names of the set flags in bit order, e.g.
// ["encryption","seed"]; unknown bits are ignored. It never returns nil, so
// JSON shows an empty list rather than null.
func (f Flags) Names() []string {
	out := []string{}
	for _, fn := range flagNames {
		if f&fn.f != 0 {
			out = append(out, fn.name)
		}
	}
	return out
}

func (f Flags) String() string { return strings.Join(f.Names(), ",") }

// ErrMalformed is returned when the payload is not a bencoded dictionary of
// the BEP 11 shape.
var ErrMalformed = errors.New("malformed pex message")

// Peer is one added peer and the flags the sender gave it.
type Peer struct {
	Addr  netip.AddrPort
	Flags Flags
}

// Message is a decoded ut_pex message.
type Message struct {
	Added   []Peer           // from "added" then "added6"
	Dropped []netip.AddrPort // from "dropped" then "dropped6"
	// Truncated counts entries ignored because a list exceeded MaxEntries.
	Truncated int
	// FlagsMismatch is set when an "added.f"/"added6.f" string does not have
	// one byte per added peer; missing flags are taken as zero and extra
	// ones are ignored.
	FlagsMismatch bool
}

// wire is the bencoded shape of the message; the compact lists stay raw
// byte strings so that they can be decoded with a bound.
type wire struct {
	Added    []byte `bencode:"added"`
	AddedF   []byte `bencode:"added.f"`
	Added6   []byte `bencode:"added6"`
	Added6F  []byte `bencode:"added6.f"`
	Dropped  []byte `bencode:"dropped"`
	Dropped6 []byte `bencode:"dropped6"`
}

// Parse decodes a ut_pex payload (the bytes after the extended message id).
// Unknown keys are ignored; trailing bytes after the dictionary are an error.
func Parse(payload []byte) (Message, error) {
	if len(payload) == 0 || payload[0] != 'd' {
		return Message{}, fmt.Errorf("%w: not a dictionary", ErrMalformed)
	}
	var w wire
	if err := bencode.Unmarshal(payload, &w); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var m Message
	if err := m.addPeers(w.Added, w.AddedF, compact.Size4, "added"); err != nil {
		return Message{}, err
	}
	if err := m.addPeers(w.Added6, w.Added6F, compact.Size6, "added6"); err != nil {
		return Message{}, err
	}
	for _, l := range []struct {
		b    []byte
		size int
		key  string
	}{{w.Dropped, compact.Size4, "dropped"}, {w.Dropped6, compact.Size6, "dropped6"}} {
		addrs, trunc, err := compact.Decode(l.b, l.size, MaxEntries)
		if err != nil {
			return Message{}, fmt.Errorf("pex %s: %w", l.key, err)
		}
		m.Dropped = append(m.Dropped, addrs...)
		m.Truncated += trunc
	}
	return m, nil
}

func (m *Message) addPeers(list, flags []byte, size int, key string) error {
	addrs, trunc, err := compact.Decode(list, size, MaxEntries)
	if err != nil {
		return fmt.Errorf("pex %s: %w", key, err)
	}
	m.Truncated += trunc
	if len(flags) != len(addrs)+trunc {
		m.FlagsMismatch = true
	}
	for i, a := range addrs {
		var f Flags
		if i < len(flags) {
			f = Flags(flags[i])
		}
		m.Added = append(m.Added, Peer{Addr: a, Flags: f})
	}
	return nil
}
