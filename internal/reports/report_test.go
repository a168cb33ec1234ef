package reports

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/audit"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/observation/collect"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// synth is a hand-made audit of an 8-piece torrent over 60 s: peer A
// (address a) grows from 2 to 4 pieces, B is a seeder seen once at 20 s, C
// refuses every connection, and identities announce from a (with a
// passkey), from c, and from an address never on the wire.
type synth struct {
	res      *audit.Result
	t0       time.Time
	a, b, c  netip.AddrPort
	loneAddr netip.AddrPort
	pidA     [20]byte
}

func newSynth(t *testing.T) synth {
	t.Helper()
	s := synth{
		t0:       time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		a:        netip.MustParseAddrPort("127.0.0.1:6881"),
		b:        netip.MustParseAddrPort("127.0.0.2:6881"),
		c:        netip.MustParseAddrPort("127.0.0.3:6881"),
		loneAddr: netip.MustParseAddrPort("127.0.0.4:6881"),
	}
	copy(s.pidA[:], "-TR3000-aaaaaaaaaaaa")
	at := func(sec int) time.Time { return s.t0.Add(time.Duration(sec) * time.Second) }
	const n = 8
	tor := &torrentmeta.Torrent{InfoHash: infohash.T{1, 2, 3}, Name: "synthetic", PieceLength: 16 << 10, TotalLength: n * 16 << 10, NumPieces: n}
	bf := func(pieces ...int) bitfield.Bitfield {
		b := bitfield.New(n)
		for _, i := range pieces {
			b.Set(i)
		}
		return b
	}
	ev := &audit.Evidence{
		Torrent: tor,
		Peers: []store.Peer{
			{Addr: s.a, PeerID: s.pidA[:], Client: "Transmission 3.00", Encryption: "rc4", FirstSeen: at(0), LastSeen: at(50), Sources: []string{"tracker:http://127.0.0.1/announce", "pex:127.0.0.2:6881"}},
			{Addr: s.b, Client: "", FirstSeen: at(15), LastSeen: at(20), Sources: []string{"dht"}},
			{Addr: s.c, FirstSeen: at(0), LastSeen: at(0), Sources: []string{audit.SourceEmbeddedTracker}},
		},
		Wire: []verdict.WirePeer{
			{Addr: s.a, PeerIDs: [][20]byte{s.pidA}, Observations: []timeline.Observation{
				{At: at(0), Kind: timeline.KindConnected},
				{At: at(0), Kind: timeline.KindBitfield, Pieces: bf(0, 1)},
				{At: at(30), Kind: timeline.KindHave, Piece: 2},
				{At: at(50), Kind: timeline.KindConnected},
				{At: at(50), Kind: timeline.KindBitfield, Pieces: bf(0, 1, 2, 3)},
			}},
			{Addr: s.b, Observations: []timeline.Observation{
				{At: at(20), Kind: timeline.KindConnected},
				{At: at(20), Kind: timeline.KindBitfield, Pieces: bitfield.Full(n)},
			}},
			{Addr: s.c, Observations: []timeline.Observation{
				{At: at(1), Kind: timeline.KindRefused}, {At: at(12), Kind: timeline.KindRefused},
				{At: at(33), Kind: timeline.KindRefused}, {At: at(55), Kind: timeline.KindRefused},
			}},
		},
	}
	ann := func(sec int, pid [20]byte, addr netip.AddrPort, passkey string, event reported.Event, up, left int64) reported.Announce {
		return reported.Announce{At: at(sec), InfoHash: tor.InfoHash, PeerID: pid, IP: addr.Addr(), Port: addr.Port(), Uploaded: up, Left: left, Event: event, Passkey: passkey}
	}
	var pidC, pidLone [20]byte
	copy(pidC[:], "-UT3550-cccccccccccc")
	copy(pidLone[:], "-DE13F0-llllllllllll")
	ev.Announces = []reported.Announce{
		ann(5, s.pidA, s.a, "secretpasskey", reported.EventStarted, 0, 6*16<<10),
		ann(25, s.pidA, s.a, "secretpasskey", reported.EventNone, 16<<10, 5*16<<10),
		ann(45, s.pidA, s.a, "secretpasskey", reported.EventStopped, 32<<10, 4*16<<10),
		// C claims far more than the swarm could absorb.
		ann(2, pidC, s.c, "", reported.EventStarted, 0, 0),
		ann(40, pidC, s.c, "", reported.EventNone, 4<<30, 0),
		ann(3, pidLone, s.loneAddr, "", reported.EventStarted, 0, 0),
		ann(43, pidLone, s.loneAddr, "", reported.EventNone, 1<<20, 0),
	}
	rep, err := ev.Judge(verdict.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	s.res = &audit.Result{Started: at(0), Ended: at(60), Evidence: ev, Report: rep, Progress: collect.Progress{BytesIn: 1000, BytesOut: 100}}
	return s
}

func peerAt(t *testing.T, r *Report, addr string) *Peer {
	t.Helper()
	for i := range r.Peers {
		if r.Peers[i].Address == addr {
			return &r.Peers[i]
		}
	}
	t.Fatalf("no row for %s", addr)
	return nil
}

func ints(v ...int) []int { return v }

func series(s []*int) []int {
	out := make([]int, len(s))
	for i, p := range s {
		out[i] = -1
		if p != nil {
			out[i] = *p
		}
	}
	return out
}

func TestBuildSynthetic(t *testing.T) {
	s := newSynth(t)
	r, err := Build(s.res, Options{Buckets: 6, GeneratedAt: s.t0.Add(time.Hour), Truth: &Truth{Cheaters: []string{s.c.String()}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.SchemaVersion != 1 || r.Swarm.Pieces != 8 || r.Swarm.Duration != 60 || r.Timeline.Bucket != 10 || len(r.Timeline.Times) != 6 {
		t.Fatalf("header %+v timeline bucket %v times %d", r.Swarm, r.Timeline.Bucket, len(r.Timeline.Times))
	}
	tl := r.Timeline
	for _, c := range []struct {
		name      string
		got, want []int
	}{
		{"peers present", tl.Peers, ints(1, 2, 1, 1, 1, 0)},
		{"seeders", tl.Seeders, ints(0, 1, 0, 0, 0, 0)},
		{"pieces available", tl.PiecesAvailable, ints(2, 8, 3, 3, 4, 0)},
		{"announcing", tl.Announcing, ints(3, 3, 3, 3, 2, 0)},
		{"A's pieces", series(peerAt(t, r, s.a.String()).Pieces.Series), ints(2, 2, 3, 3, 4, 4)},
		{"B's pieces", series(peerAt(t, r, s.b.String()).Pieces.Series), ints(-1, 8, 8, 8, 8, 8)},
		{"C's pieces", series(peerAt(t, r, s.c.String()).Pieces.Series), ints(-1, -1, -1, -1, -1, -1)},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if want := []float64{0.25, 1.25, 0.375, 0.375, 0.5, 0}; !slices.Equal(tl.Copies, want) {
		t.Errorf("copies %v, want %v", tl.Copies, want)
	}

	a := peerAt(t, r, s.a.String())
	if a.Reported == nil || len(a.Reported.Identities) != 1 || a.Reported.Announces != 3 || a.Reported.Uploaded != 32<<10 || a.Reported.LastLeft != 4*16<<10 {
		t.Fatalf("A reported %+v", a.Reported)
	}
	if a.Reported.Seconds != 40 || a.Reported.UploadRate != float64(32<<10)/40 {
		t.Errorf("A reported seconds %v rate %v", a.Reported.Seconds, a.Reported.UploadRate)
	}
	if a.Client != "Transmission 3.00" || a.Encryption != "rc4" || a.PeerIDText != "-TR3000-aaaaaaaaaaaa" || !a.OnWire || a.Verdict != "ok" || a.Flagged {
		t.Errorf("A %+v", a)
	}
	if a.Pieces.Held != 4 || a.Pieces.Gained != 2 || a.Connections.Connected != 2 || a.FirstSeen == nil || !a.FirstSeen.Equal(s.t0) || !a.LastSeen.Equal(s.t0.Add(50*time.Second)) {
		t.Errorf("A pieces %+v connections %+v seen %v..%v", a.Pieces, a.Connections, a.FirstSeen, a.LastSeen)
	}
	if a.UploadBounds == nil || a.UploadBounds.Upper <= 0 {
		t.Errorf("A upload bounds %+v", a.UploadBounds)
	}
	if got := slices.Clone(a.Sources); !slices.Equal(got, []string{"tracker:http://127.0.0.1/announce", "pex:127.0.0.2:6881"}) {
		t.Errorf("A sources %v", got)
	}

	c := peerAt(t, r, s.c.String())
	if c.Verdict != "misreporting" || !c.Flagged || c.Connections.Refused != 4 || c.OnWire != true || c.Client != "µTorrent 3.5.5" {
		t.Errorf("C %+v", c)
	}
	var codes []string
	for _, rs := range c.Reasons {
		codes = append(codes, rs.Code)
	}
	if !slices.Contains(codes, "never_handshaked") || !slices.Contains(codes, "upload_exceeds_availability") {
		t.Errorf("C reasons %v", codes)
	}
	b := peerAt(t, r, s.b.String())
	if b.Verdict != VerdictUnreported || b.Reported != nil || b.Flagged || b.Pieces.Held != 8 {
		t.Errorf("B %+v", b)
	}
	lone := peerAt(t, r, s.loneAddr.String())
	if lone.OnWire || lone.Verdict != "unverifiable" || lone.Client != "Deluge 1.3.15" || lone.Pieces.Known || lone.UploadBounds != nil {
		t.Errorf("lone %+v", lone)
	}
	// Worst first: C, then the unverifiable identity, then A, then B.
	var order []string
	for _, p := range r.Peers {
		order = append(order, p.Verdict)
	}
	if !slices.Equal(order, []string{"misreporting", "unverifiable", "ok", VerdictUnreported}) {
		t.Errorf("row order %v", order)
	}

	sum := r.Summary
	if sum.Verdicts != (VerdictCounts{Misreporting: 1, OK: 1, Unverifiable: 1}) || sum.Identities != 3 || sum.Unobserved != 1 ||
		sum.FlaggedPeers != 1 || sum.PeersDiscovered != 3 || sum.PeersReached != 2 || sum.PeersProbed != 0 || sum.AuditorBytesIn != 1000 {
		t.Errorf("summary %+v", sum)
	}
	if want := map[string]int{"tracker": 1, "pex": 1, "dht": 1, audit.SourceEmbeddedTracker: 1}; !mapsEqual(sum.Sources, want) {
		t.Errorf("sources %v, want %v", sum.Sources, want)
	}
	if len(r.Windows) != 1 || r.Windows[0].ReportedUploaded != sum.ReportedUploaded || sum.ReportedUploaded != 4<<30+32<<10+1<<20 {
		t.Errorf("windows %+v, summary reported %d", r.Windows, sum.ReportedUploaded)
	}
	tr := r.Truth
	if tr == nil || tr.Matrix != (Matrix{TruePositive: 1, TrueNegative: 2}) || tr.UnverifiableHonest != 1 || *tr.Precision != 1 || *tr.Recall != 1 || len(tr.UnreportedCheaters) != 0 {
		t.Errorf("truth %+v", tr)
	}
	if c.Cheater == nil || !*c.Cheater || a.Cheater == nil || *a.Cheater {
		t.Errorf("cheater marks: C %v A %v", c.Cheater, a.Cheater)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestTruthMatching: truth entries match rows by address, peer id or
// identity key; a cheater the audit never saw report is listed apart.
func TestTruthMatching(t *testing.T) {
	s := newSynth(t)
	for _, c := range []struct {
		name       string
		cheaters   []string
		matrix     Matrix
		unreported []string
	}{
		{"by address", []string{s.c.String()}, Matrix{TruePositive: 1, TrueNegative: 2}, []string{}},
		{"by peer id", []string{"2D5554333535302D636363636363636363636363"}, Matrix{TruePositive: 1, TrueNegative: 2}, []string{}},
		{"honest named", []string{s.a.String()}, Matrix{FalsePositive: 1, FalseNegative: 1, TrueNegative: 1}, []string{}},
		{"unverifiable cheater", []string{s.loneAddr.String()}, Matrix{FalsePositive: 1, FalseNegative: 1, TrueNegative: 1}, []string{}},
		{"never reported", []string{s.b.String(), "127.0.0.99:1"}, Matrix{FalsePositive: 1, TrueNegative: 2}, []string{s.b.String(), "127.0.0.99:1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Build(s.res, Options{Truth: &Truth{Cheaters: c.cheaters}})
			if err != nil {
				t.Fatal(err)
			}
			if r.Truth.Matrix != c.matrix || !slices.Equal(r.Truth.UnreportedCheaters, c.unreported) {
				t.Errorf("matrix %+v unreported %v, want %+v %v", r.Truth.Matrix, r.Truth.UnreportedCheaters, c.matrix, c.unreported)
			}
		})
	}
}

func TestHidePasskeys(t *testing.T) {
	s := newSynth(t)
	r, err := Build(s.res, Options{HidePasskeys: true, PasskeyKey: []byte("a per-database key for the tests")})
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	for _, w := range []func(*bytes.Buffer) error{
		func(b *bytes.Buffer) error { return WriteJSON(b, r) },
		func(b *bytes.Buffer) error { return WriteCSV(b, r) },
		func(b *bytes.Buffer) error { return WriteHTML(b, r) },
	} {
		if err := w(&all); err != nil {
			t.Fatal(err)
		}
	}
	if bytes.Contains(all.Bytes(), []byte("secretpasskey")) {
		t.Fatal("a passkey is in the report")
	}
	a := peerAt(t, r, s.a.String())
	if k := a.Reported.Identities[0].Key; !strings.HasPrefix(k, "pid:") || !strings.Contains(k, "|hmac:") {
		t.Errorf("hidden key %q", k)
	}
	r2, err := Build(s.res, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if k := peerAt(t, r2, s.a.String()).Reported.Identities[0].Key; !strings.HasSuffix(k, "|secretpasskey") {
		t.Errorf("key without hiding %q", k)
	}
}

// TestHidePasskeyKeepsUserIDs: a tracker's user id stays readable (the
// operator acts on it); anything else after the bar is hashed, including
// things that only look like a user id.
func TestHidePasskeyKeepsUserIDs(t *testing.T) {
	key := []byte("a per-database key for the tests")
	for _, c := range []struct {
		in    string
		clear bool
	}{
		{"pid:00|uid:7", true},
		{"addr:127.0.0.1:6881|uid:123456", true},
		{"pid:00|uid:", false},
		{"pid:00|uid:7a", false},
		{"pid:00|uid:-7", false},
		{"pid:00|uid:123456789012345678901", false},
		{"pid:00|0123456789abcdef0123456789abcdef", false},
	} {
		got := HidePasskey(c.in, key)
		if (got == c.in) != c.clear {
			t.Errorf("HidePasskey(%q) = %q, clear %v", c.in, got, c.clear)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	s := newSynth(t)
	noTorrent := *s.res
	noTorrent.Evidence = &audit.Evidence{}
	badGeometry := *s.res
	ev := *s.res.Evidence
	ev.Torrent = &torrentmeta.Torrent{NumPieces: 0}
	badGeometry.Evidence = &ev
	noReport := *s.res
	noReport.Report = nil
	for _, c := range []struct {
		name string
		res  *audit.Result
		opts Options
		want error
	}{
		{"nil", nil, Options{}, ErrInput},
		{"no evidence", &audit.Result{Report: s.res.Report}, Options{}, ErrInput},
		{"no torrent", &noTorrent, Options{}, ErrInput},
		{"no verdicts", &noReport, Options{}, ErrInput},
		{"bad geometry", &badGeometry, Options{}, ErrInput},
		{"bad config", s.res, Options{Verdict: verdict.Config{SuspectFactor: 0.5}}, verdict.ErrConfig},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Build(c.res, c.opts); !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
	for name, f := range map[string]func() error{
		"json": func() error { return WriteJSON(&bytes.Buffer{}, nil) },
		"csv":  func() error { return WriteCSV(&bytes.Buffer{}, nil) },
		"html": func() error { return WriteHTML(&bytes.Buffer{}, nil) },
	} {
		if err := f(); !errors.Is(err, ErrInput) {
			t.Errorf("%s of nil: %v", name, err)
		}
	}
}

func TestBuckets(t *testing.T) {
	s := newSynth(t)
	for _, c := range []struct {
		buckets, want int
		bucket        float64
	}{
		{0, 60, 1}, {1, 1, 60}, {7, 7, 60.0 / 7}, {5000, 60, 1},
	} {
		r, err := Build(s.res, Options{Buckets: c.buckets})
		if err != nil {
			t.Fatal(err)
		}
		tl := r.Timeline
		if len(tl.Times) != c.want || len(tl.Peers) != c.want || len(r.Peers[0].Pieces.Series) != c.want {
			t.Errorf("buckets %d: %d times, %d peers, %d series", c.buckets, len(tl.Times), len(tl.Peers), len(r.Peers[0].Pieces.Series))
		}
		if d := tl.Bucket - c.bucket; d > 1e-6 || d < -1e-6 {
			t.Errorf("buckets %d: bucket %v s, want %v", c.buckets, tl.Bucket, c.bucket)
		}
		if last := tl.Times[len(tl.Times)-1]; last.Before(r.Swarm.Ended) {
			t.Errorf("buckets %d: last bucket ends %v before the span %v", c.buckets, last, r.Swarm.Ended)
		}
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "report.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("report.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("report.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func validate(t *testing.T, sch *jsonschema.Schema, doc []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	return sch.Validate(inst)
}

// TestSchema validates reports, from the synthetic audit and from a real
// one, against docs/report.schema.json, and checks that the schema rejects
// broken ones.
func TestSchema(t *testing.T) {
	sch := compileSchema(t)
	s := newSynth(t)
	reports := map[string]*Report{}
	for name, opts := range map[string]Options{
		"synthetic":       {},
		"synthetic truth": {Truth: &Truth{Cheaters: []string{s.c.String()}}, HidePasskeys: true, PasskeyKey: []byte("a per-database key for the tests")},
		"one bucket":      {Buckets: 1},
	} {
		r, err := Build(s.res, opts)
		if err != nil {
			t.Fatal(err)
		}
		reports[name] = r
	}
	withScrape := *s.res
	withScrape.Scrapes = []audit.ScrapeCheck{{Tracker: "http://127.0.0.1:1/announce", Seeders: 5, Leechers: 2, Completed: 1,
		ObservedSeeders: 1, ObservedLeechers: 2, Note: "the tracker counts 4 seeders the wire never showed complete"}}
	if r, err := Build(&withScrape, Options{}); err != nil || len(r.Scrape) != 1 {
		t.Fatalf("scrape: %v", err)
	} else {
		reports["with scrape"] = r
	}
	if !testing.Short() {
		res, cheaters := auditFixture(t)
		r, err := Build(res, Options{Truth: &Truth{Cheaters: cheaters}})
		if err != nil {
			t.Fatal(err)
		}
		reports["real audit"] = r
	}
	for name, r := range reports {
		var buf bytes.Buffer
		if err := WriteJSON(&buf, r); err != nil {
			t.Fatal(err)
		}
		if err := validate(t, sch, buf.Bytes()); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	var good bytes.Buffer
	if err := WriteJSON(&good, reports["synthetic"]); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		mutate func(m map[string]any)
	}{
		{"other version", func(m map[string]any) { m["schema_version"] = 2 }},
		{"no peers", func(m map[string]any) { delete(m, "peers") }},
		{"unknown field", func(m map[string]any) { m["extra"] = true }},
		{"bad verdict", func(m map[string]any) { m["peers"].([]any)[0].(map[string]any)["verdict"] = "guilty" }},
		{"negative count", func(m map[string]any) { m["summary"].(map[string]any)["peers_reached"] = -1 }},
		{"bad time", func(m map[string]any) { m["generated_at"] = "yesterday" }},
		{"confidence over 1", func(m map[string]any) { m["peers"].([]any)[0].(map[string]any)["confidence"] = 1.5 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(good.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			c.mutate(m)
			b, _ := json.Marshal(m)
			if err := validate(t, sch, b); err == nil {
				t.Fatal("the schema accepted a broken report")
			}
		})
	}
}

func TestReadJSON(t *testing.T) {
	s := newSynth(t)
	r, err := Build(s.res, Options{Truth: &Truth{Cheaters: []string{s.c.String()}}})
	if err != nil {
		t.Fatal(err)
	}
	var first bytes.Buffer
	if err := WriteJSON(&first, r); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(bytes.NewReader(first.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var second bytes.Buffer
	if err := WriteJSON(&second, back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Fatal("a report read back writes differently")
	}
	for _, c := range []struct {
		name string
		in   string
		want error
	}{
		{"version 2", `{"schema_version": 2}`, ErrSchemaVersion},
		{"no version", `{"peers": []}`, ErrSchemaVersion},
		{"not json", `<html>`, nil},
		{"empty", ``, nil},
		{"wrong type", `{"schema_version": 1, "peers": 3}`, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadJSON(strings.NewReader(c.in))
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
}

func TestWriteCSV(t *testing.T) {
	s := newSynth(t)
	r, err := Build(s.res, Options{Truth: &Truth{Cheaters: []string{s.c.String()}}})
	if err != nil {
		t.Fatal(err)
	}
	// A hostile client name must not become a spreadsheet formula.
	r.Peers[0].Client = "=HYPERLINK(\"x\")"
	var buf bytes.Buffer
	if err := WriteCSV(&buf, r); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recs[0], CSVHeader()) || len(recs) != len(r.Peers)+1 {
		t.Fatalf("header %v, %d lines for %d peers", recs[0], len(recs), len(r.Peers))
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	rowOf := func(addr string) []string {
		for _, rec := range recs[1:] {
			if rec[col["address"]] == addr {
				return rec
			}
		}
		t.Fatalf("no CSV line for %s", addr)
		return nil
	}
	for _, c := range []struct {
		addr, column, want string
	}{
		{s.c.String(), "verdict", "misreporting"},
		{s.c.String(), "flagged", "true"},
		{s.c.String(), "refused", "4"},
		{s.c.String(), "client", "'=HYPERLINK(\"x\")"},
		{s.c.String(), "cheater", "true"},
		{s.c.String(), "pieces_held", ""},
		{s.a.String(), "pieces_held", "4"},
		{s.a.String(), "pieces_total", "8"},
		{s.a.String(), "reported_uploaded", "32768"},
		{s.a.String(), "last_left", "65536"},
		{s.a.String(), "sources", "tracker:http://127.0.0.1/announce;pex:127.0.0.2:6881"},
		{s.a.String(), "first_seen", "2026-01-01T00:00:00Z"},
		{s.a.String(), "cheater", "false"},
		{s.b.String(), "reported_uploaded", ""},
		{s.b.String(), "verdict", VerdictUnreported},
	} {
		if got := rowOf(c.addr)[col[c.column]]; got != c.want {
			t.Errorf("%s %s = %q, want %q", c.addr, c.column, got, c.want)
		}
	}
}

func TestCSVText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""}, {"plain", "plain"}, {"=1+1", "'=1+1"}, {"+1", "'+1"}, {"-1", "'-1"}, {"@SUM(A1)", "'@SUM(A1)"},
		{"\tx", "'\tx"}, {"a=b", "a=b"},
	} {
		if got := text(c.in); got != c.want {
			t.Errorf("text(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestRealAudit checks the report of a real audit of a loopback swarm:
// both cheaters flagged, the honest peers ok, every identity in a row.
func TestRealAudit(t *testing.T) {
	res, cheaters := auditFixture(t)
	r, err := Build(res, Options{Truth: &Truth{Cheaters: cheaters}})
	if err != nil {
		t.Fatal(err)
	}
	if tr := r.Truth; tr.Matrix.TruePositive != 2 || tr.Matrix.FalsePositive != 0 || tr.Matrix.FalseNegative != 0 {
		t.Errorf("truth %+v", tr.Matrix)
	}
	ids := 0
	for _, p := range r.Peers {
		if p.Reported != nil {
			ids += len(p.Reported.Identities)
		}
		switch {
		case slices.Contains(cheaters, p.Address):
			if !p.Flagged || !p.OnWire || len(p.Reasons) == 0 {
				t.Errorf("cheater %s: %s, reasons %v", p.Address, p.Verdict, p.Reasons)
			}
		case p.Address == "127.0.0.9:1":
			if p.OnWire || p.Verdict != "unverifiable" {
				t.Errorf("imported identity: %+v", p)
			}
		default:
			if p.Verdict != "ok" || !p.Capacity.Known || !p.Pieces.Known || p.Client == "" {
				t.Errorf("honest peer %s: %s capacity %+v pieces %+v client %q", p.Address, p.Verdict, p.Capacity, p.Pieces, p.Client)
			}
		}
	}
	if ids != r.Summary.Identities || ids != 5 {
		t.Errorf("%d identities in rows, %d in the summary, want 5", ids, r.Summary.Identities)
	}
	if r.Summary.PeersReached < 3 || r.Summary.PeersProbed < 2 || r.Summary.AuditorBytesIn == 0 {
		t.Errorf("summary %+v", r.Summary)
	}
	if r.Summary.ObservedDownloaded <= 0 {
		t.Errorf("the leecher's three pieces were not seen downloaded: %+v", r.Summary)
	}
	if last := r.Timeline.PiecesAvailable[len(r.Timeline.PiecesAvailable)-1]; slices.Max(r.Timeline.PiecesAvailable) != r.Swarm.Pieces {
		t.Errorf("pieces available %v (last %d), want all %d with the seeder present", r.Timeline.PiecesAvailable, last, r.Swarm.Pieces)
	}
}

// TestCompletionTimes: pieces announced in a burst are spread over the span
// since the previous burst (or the last snapshot lacking them); single
// announcements and pieces held at first sight stay where they were seen.
func TestCompletionTimes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	gain := func(piece int, lacked, had time.Time) timeline.Gain {
		return timeline.Gain{Piece: piece, Lacked: lacked, Had: had}
	}
	var none time.Time
	tests := []struct {
		name  string
		gains []timeline.Gain
		want  []float64 // seconds after t0
	}{
		{"batched HAVEs every 10 s (Transmission)", []timeline.Gain{
			gain(0, t0, at(10)), gain(1, t0, at(10.00001)), gain(2, t0, at(10.00002)), gain(3, t0, at(10.00003)),
			gain(4, t0, at(20)), gain(5, t0, at(20.00001)),
		}, []float64{2.5000075, 5.000015, 7.5000225, 10.00003, 15.00002, 20.00001}},
		{"HAVEs one at a time", []timeline.Gain{gain(0, t0, at(1)), gain(1, t0, at(2)), gain(2, t0, at(3))}, []float64{1, 2, 3}},
		{"held at first sight, then a burst", []timeline.Gain{
			gain(0, none, t0), gain(1, none, t0), gain(2, t0, at(10)), gain(3, t0, at(10)),
		}, []float64{0, 0, 5, 10}},
		{"a snapshot after a gap: not before the last snapshot lacking them", []timeline.Gain{
			gain(0, t0, at(10)), gain(1, at(30), at(90)), gain(2, at(30), at(90)), gain(3, at(30), at(90)),
		}, []float64{10, 50, 70, 90}},
		{"HAVEs only (nothing ever lacked)", []timeline.Gain{gain(0, none, at(5)), gain(1, none, at(5))}, []float64{5, 5}},
		{"none", nil, []float64{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := completionTimes(tc.gains)
			if len(got) != len(tc.want) {
				t.Fatalf("%d times, want %d", len(got), len(tc.want))
			}
			for i, g := range got {
				if d := g.Sub(at(tc.want[i])); d < -time.Microsecond || d > time.Microsecond {
					t.Errorf("piece %d completed at %v, want %vs", i, g.Sub(t0), tc.want[i])
				}
			}
		})
	}
}
