// Package peerid names the BitTorrent client behind a peer_id (the 20 bytes
// a peer sends in its handshake and tracker announces), and makes our own.
//
// It is written by hand: no Go library in our dependency set decodes client
// names. The encodings follow BEP 20 and the conventions collected in
// Transmission's libtransmission/clients.cc (Azureus style -XXyyyy-,
// Shad0w style, Mainline style), checked against the clients installed on
// the test machine.
package peerid

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Prefix is swarmaudit's Azureus-style peer_id prefix (version 0.1.0), and
// OurName the client name it sends in extension handshakes (BEP 10 `v`).
// Every connection and announce of the auditor identifies itself this way.
const (
	Prefix  = "-SA0100-"
	OurName = "swarmaudit"
)

// Client is a decoded peer_id.
type Client struct {
	// Name is the client name, or "unknown".
	Name string
	// Version as the client encodes it ("3.00+ (dev)", "2.0.8"); for an
	// unknown client, the raw Azureus prefix or the first 8 bytes in hex.
	Version string
	// Known reports whether the client was recognised.
	Known bool
}

// String is Name and Version separated by a space.
func (c Client) String() string {
	if c.Version == "" {
		return c.Name
	}
	return c.Name + " " + c.Version
}

// ClientName decodes a peer_id into a client name and version, such as
// "Transmission 3.00" or "unknown 0011223344556677".
func ClientName(id [20]byte) string {
	return Identify(id).String()
}

// New returns a peer_id starting with prefix (cut to 20 bytes) followed by
// random characters from the RFC 4648 base32 alphabet, which are printable
// and need no escaping in tracker URLs.
func New(prefix string) [20]byte {
	var id [20]byte
	n := copy(id[:], prefix)
	copy(id[n:], rand.Text())
	return id
}

// Identify decodes a peer_id.
func Identify(id [20]byte) Client {
	for _, decode := range []func([20]byte) (Client, bool){
		azureus, mainline, aria2, shadow, bitComet, other,
	} {
		if c, ok := decode(id); ok {
			c.Known = c.Name != "unknown"
			return c
		}
	}
	return Client{Name: "unknown", Version: hex.EncodeToString(id[:8])}
}

// formatter renders the version part of an Azureus-style id (all 20 bytes
// are passed; the version is in id[3:7]). ok is false if the bytes do not
// follow the client's scheme.
type formatter func(id [20]byte) (version string, ok bool)

type azClient struct {
	name    string
	version formatter
}

var azureusClients = map[string]azClient{
	"AG": {"Ares", fourDigit},
	"AZ": {"Vuze", fourDigit}, // "Azureus" before 3.0, see azureus()
	"BC": {"BitComet", twoMajorTwoMinor},
	"BI": {"BiglyBT", fourDigit},
	"BN": {"Baidu Netdisk", noVersion},
	"BT": {"BitTorrent", uTorrentVersion},
	"DE": {"Deluge", threeDigit},
	"FD": {"Free Download Manager", threeDigit},
	"FL": {"Folx", threeDigit},
	"FW": {"FrostWire", threeDigit},
	"GT": {"anacrolix/torrent", fourDigit},
	"HL": {"Halite", threeDigit},
	"KG": {"KGet", fourDigit},
	"KT": {"KTorrent", kTorrentVersion},
	"LT": {"libtorrent (Rasterbar)", threeDigit},
	"MG": {"MediaGet", twoDigit},
	"MO": {"MonoTorrent", fourDigit},
	"PI": {"PicoTorrent", threeDigit},
	"QD": {"QQDownload", fourDigit},
	"SA": {"swarmaudit", threeDigit},
	"SD": {"Thunder (Xunlei)", fourDigit},
	"SP": {"BitSpirit", threeDigit},
	"SZ": {"Shareaza", fourDigit},
	"TR": {"Transmission", transmissionVersion},
	"TT": {"TuoTu", fourDigit},
	"TX": {"Tixati", twoMajorTwoMinor},
	"UE": {"µTorrent Embedded", uTorrentVersion},
	"UM": {"µTorrent Mac", uTorrentVersion},
	"UT": {"µTorrent", uTorrentVersion},
	"UW": {"µTorrent Web", uTorrentVersion},
	"VG": {"Vagaa", fourDigit},
	"WW": {"WebTorrent", twoMajorTwoMinor},
	"XL": {"Xunlei", fourDigit},
	"lt": {"libTorrent (rakshasa)", threeDigit},
	"qB": {"qBittorrent", threeDigit},
}

// azureus decodes -XXvvvv- ids (BEP 20).
func azureus(id [20]byte) (Client, bool) {
	if id[0] != '-' {
		return Client{}, false
	}
	code := string(id[1:3])
	c, ok := azureusClients[code]
	if !ok {
		// Unknown code: show the prefix raw if it looks Azureus-style.
		if id[7] != '-' || !printable(id[1:7]) {
			return Client{}, false
		}
		return Client{Name: "unknown", Version: string(id[:8])}, true
	}
	v, ok := c.version(id)
	if !ok {
		v = "version " + quoteRaw(id[3:7])
	}
	name := c.name
	if code == "AZ" && ok && id[3] < '3' {
		name = "Azureus"
	}
	return Client{Name: name, Version: v}, true
}

// base62 is the digit value of an Azureus version character: 0-9, then
// A-Z for 10-35 (libtorrent's fingerprint), then a-z for 36-61.
func base62(c byte) (int, bool) {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0'), true
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10, true
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 36, true
	}
	return 0, false
}

func dotted(b []byte) (string, bool) {
	parts := make([]string, len(b))
	for i, c := range b {
		n, ok := base62(c)
		if !ok {
			return "", false
		}
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, "."), true
}

func twoDigit(id [20]byte) (string, bool)   { return dotted(id[3:5]) }
func threeDigit(id [20]byte) (string, bool) { return dotted(id[3:6]) }
func fourDigit(id [20]byte) (string, bool)  { return dotted(id[3:7]) }
func noVersion([20]byte) (string, bool)     { return "", true }

func decimal(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// twoMajorTwoMinor: -BC0150- is 1.50.
func twoMajorTwoMinor(id [20]byte) (string, bool) {
	major, ok1 := decimal(id[3:5])
	minor, ok2 := decimal(id[5:7])
	if !ok1 || !ok2 {
		return "", false
	}
	return fmt.Sprintf("%d.%02d", major, minor), true
}

// transmissionVersion: -TR0006- is 0.6, -TR0072- is 0.72, -TR3000- is 3.00,
// -TR300Z- is 3.00+ (a development build), -TR4050- is 4.0.5, -TR410Z- is
// 4.1.0 (dev), -TR400B- is 4.0.0 (beta).
func transmissionVersion(id [20]byte) (string, bool) {
	v := id[3:7]
	switch {
	case string(v[:3]) == "000":
		if _, ok := decimal(v[3:]); !ok {
			return "", false
		}
		return "0." + string(v[3]), true
	case string(v[:2]) == "00":
		minor, ok := decimal(v[2:])
		if !ok {
			return "", false
		}
		return fmt.Sprintf("0.%02d", minor), true
	case v[0] >= '1' && v[0] <= '3':
		minor, ok := decimal(v[1:3])
		if !ok {
			return "", false
		}
		s := fmt.Sprintf("%c.%02d", v[0], minor)
		switch v[3] {
		case '0':
			return s, true
		case 'Z', 'X':
			return s + "+ (dev)", true
		case 'B', 'b':
			return s + " (beta)", true
		}
		return "", false
	}
	s, ok := dotted(v[:3])
	if !ok {
		return "", false
	}
	switch v[3] {
	case '0':
		return s, true
	case 'Z', 'X':
		return s + " (dev)", true
	case 'B', 'b':
		return s + " (beta)", true
	}
	return "", false
}

// uTorrentVersion: major and minor are hex digits; -UT3550- is 3.5.5, and
// -UT355B- a beta. Longer versions replace the trailing dash: -UT3315B is
// 3.3.15 (beta).
func uTorrentVersion(id [20]byte) (string, bool) {
	major, err1 := strconv.ParseUint(string(id[3:4]), 16, 8)
	minor, err2 := strconv.ParseUint(string(id[4:5]), 16, 8)
	if err1 != nil || err2 != nil {
		return "", false
	}
	var patch uint64
	var tag byte
	if id[7] == '-' {
		p, err := strconv.ParseUint(string(id[5:6]), 16, 8)
		if err != nil {
			return "", false
		}
		patch, tag = p, id[6]
	} else {
		p, ok := decimal(id[5:7])
		if !ok {
			return "", false
		}
		patch, tag = uint64(p), id[7]
	}
	return fmt.Sprintf("%d.%d.%d%s", major, minor, patch, tagSuffix(tag)), true
}

// tagSuffix names the build-type letter some clients put after the
// version digits.
func tagSuffix(c byte) string {
	switch c {
	case 'B', 'b':
		return " (beta)"
	case 'd':
		return " (debug)"
	case 'X', 'x', 'Z':
		return " (dev)"
	}
	return ""
}

// kTorrentVersion: -KT4310- is 4.3.1, -KT44D1- is 4.4 dev 1, -KT43R2- is 4.3
// RC 2.
func kTorrentVersion(id [20]byte) (string, bool) {
	label := map[byte]string{'D': " dev ", 'R': " RC "}[id[5]]
	if label == "" {
		return threeDigit(id)
	}
	major, ok1 := base62(id[3])
	minor, ok2 := base62(id[4])
	n, ok3 := base62(id[6])
	if !ok1 || !ok2 || !ok3 {
		return "", false
	}
	return fmt.Sprintf("%d.%d%s%d", major, minor, label, n), true
}

// dashedGroups reads n decimal groups, each followed by '-', from the start
// of b: "1-36-0-" gives [1 36 0].
func dashedGroups(b []byte, n int) ([]int, bool) {
	var out []int
	i := 0
	for range n {
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == i || j-i > 4 || j >= len(b) || b[j] != '-' {
			return nil, false
		}
		v, _ := decimal(b[i:j])
		out = append(out, v)
		i = j + 1
	}
	return out, true
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ".")
}

// mainline decodes Bram Cohen's style, M7-2-2-- or M7-10-3- (also Queen
// Bee's Q1-0-0--): a letter, then dash-terminated numbers within 8 bytes.
func mainline(id [20]byte) (Client, bool) {
	name := map[byte]string{'M': "Mainline", 'Q': "Queen Bee"}[id[0]]
	if name == "" {
		return Client{}, false
	}
	v, ok := dashedGroups(id[1:8], 3)
	if !ok {
		return Client{}, false
	}
	return Client{Name: name, Version: joinInts(v)}, true
}

// aria2 decodes A2-1-36-0- (aria2 1.36.0) and the old fixed "aria2-".
func aria2(id [20]byte) (Client, bool) {
	if string(id[:6]) == "aria2-" {
		return Client{Name: "aria2"}, true
	}
	if string(id[:3]) != "A2-" {
		return Client{}, false
	}
	v, ok := dashedGroups(id[3:], 3)
	if !ok {
		return Client{Name: "aria2", Version: "version " + quoteRaw(id[3:10])}, true
	}
	return Client{Name: "aria2", Version: joinInts(v)}, true
}

var shadowClients = map[byte]string{
	'A': "ABC",
	'O': "Osprey Permaseed",
	'Q': "BTQueue",
	'R': "Tribler",
	'S': "Shad0w",
	'T': "BitTornado",
	'U': "UPnP NAT Bit Torrent",
}

const shadowDigits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.-"

// shadow decodes Shad0w-style ids: a client letter, up to five version
// characters padded with '-', then "---": S58B----- is Shad0w 5.8.11,
// T03I----- is BitTornado 0.3.18.
func shadow(id [20]byte) (Client, bool) {
	name, ok := shadowClients[id[0]]
	if !ok || string(id[6:9]) != "---" {
		return Client{}, false
	}
	v := strings.TrimRight(string(id[1:6]), "-")
	if v == "" {
		return Client{}, false
	}
	parts := make([]string, len(v))
	for i := range len(v) {
		n := strings.IndexByte(shadowDigits, v[i])
		if n < 0 {
			return Client{}, false
		}
		parts[i] = strconv.Itoa(n)
	}
	return Client{Name: name, Version: strings.Join(parts, ".")}, true
}

// bitComet decodes pre-0.59 BitComet ("exbc" + two version bytes, "LORD"
// for BitLord) and its mods.
func bitComet(id [20]byte) (Client, bool) {
	mod := map[string]string{"exbc": "", "FUTB": " (Solidox mod)", "xUTB": " (mod 2)"}
	m, ok := mod[string(id[:4])]
	if !ok {
		return Client{}, false
	}
	name := "BitComet"
	if string(id[6:10]) == "LORD" {
		name = "BitLord"
	}
	return Client{Name: name + m, Version: fmt.Sprintf("%d.%02d", id[4], id[5])}, true
}

// other decodes a few fixed-prefix styles.
func other(id [20]byte) (Client, bool) {
	switch {
	case string(id[:3]) == "TIX": // TIX0193- is Tixati 1.93
		major, ok1 := decimal(id[3:5])
		minor, ok2 := decimal(id[5:7])
		if !ok1 || !ok2 {
			return Client{Name: "Tixati", Version: "version " + quoteRaw(id[3:7])}, true
		}
		return Client{Name: "Tixati", Version: fmt.Sprintf("%d.%02d", major, minor)}, true
	case string(id[:3]) == "XBT": // XBT054d- is XBT Client 0.5.4 (debug)
		v, ok := dotted(id[3:6])
		if !ok {
			return Client{}, false
		}
		return Client{Name: "XBT Client", Version: v + tagSuffix(id[6])}, true
	}
	return Client{}, false
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// quoteRaw shows bytes that failed to decode: printable ASCII as is,
// others as %XX.
func quoteRaw(b []byte) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, c := range b {
		if c >= 0x20 && c <= 0x7e && c != '"' && c != '%' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}
