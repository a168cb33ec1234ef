package testclients

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// Replies captured from the real clients (trimmed where noted).
const (
	trSeeding  = `{"torrents":[{"downloadedEver":0,"error":0,"errorString":"","hashString":"31ed53ede19e403cdb2d50a94829569717ca0f4d","leftUntilDone":0,"peersConnected":1,"percentDone":1,"rateDownload":0,"rateUpload":0,"recheckProgress":0,"sizeWhenDone":1048576,"status":6,"uploadedEver":0}]}`
	trLeeching = `{"torrents":[{"downloadedEver":524288,"error":0,"errorString":"","leftUntilDone":524288,"peersConnected":2,"percentDone":0.5,"rateDownload":1000,"rateUpload":10,"sizeWhenDone":1048576,"status":4,"uploadedEver":16384}]}`
	trError    = `{"torrents":[{"error":3,"errorString":"No data found!","status":0,"sizeWhenDone":1048576,"leftUntilDone":1048576}]}`
	// trimmed: qBittorrent sends ~50 fields
	qbSeeding  = `[{"amount_left":0,"completed":1048576,"downloaded":0,"dlspeed":0,"hash":"31ed53ede19e403cdb2d50a94829569717ca0f4d","num_leechs":0,"num_seeds":0,"progress":1,"size":1048576,"state":"stalledUP","total_size":1048576,"uploaded":0,"upspeed":0}]`
	qbChecking = `[{"amount_left":1048576,"downloaded":0,"progress":0.25,"size":1048576,"state":"checkingUP","uploaded":0}]`
	qbLeeching = `[{"amount_left":1000,"downloaded":1047576,"dlspeed":5000,"num_leechs":1,"num_seeds":2,"progress":0.999,"size":1048576,"state":"downloading","uploaded":7,"upspeed":3}]`
	a2Seeding  = `{"completedLength":"1048576","connections":"0","downloadSpeed":"0","infoHash":"31ed53ede19e403cdb2d50a94829569717ca0f4d","seeder":"true","status":"active","totalLength":"1048576","uploadLength":"0","uploadSpeed":"0"}`
	a2Leeching = `{"completedLength":"0","connections":"0","downloadSpeed":"0","infoHash":"31ed53ede19e403cdb2d50a94829569717ca0f4d","seeder":"false","status":"active","totalLength":"1048576","uploadLength":"0","uploadSpeed":"0"}`
	a2Checking = `{"completedLength":"0","connections":"0","downloadSpeed":"0","seeder":"false","status":"active","totalLength":"1048576","uploadLength":"0","uploadSpeed":"0","verifiedLength":"65536","verifyIntegrityPending":"false"}`
	ltSeeding  = `{"type": "status", "id": "7", "state": "seeding", "progress": 1.0, "is_seeding": true, "paused": false, "uploaded": 0, "downloaded": 0, "total_wanted": 1048576, "total_wanted_done": 1048576, "up_rate": 0, "down_rate": 0, "num_peers": 0, "error": ""}`
	ltPaused   = `{"type": "status", "id": "8", "state": "seeding", "progress": 1.0, "is_seeding": true, "paused": true, "uploaded": 0, "downloaded": 0, "total_wanted": 1048576, "total_wanted_done": 1048576, "up_rate": 0, "down_rate": 0, "num_peers": 0, "error": ""}`
	ltFailed   = `{"type": "status", "id": "9", "error": "status: boom"}`
)

func TestDecoders(t *testing.T) {
	tr := func(s string) (Stats, error) { return decodeTransmission([]byte(s)) }
	qb := func(s string) (Stats, error) { return decodeQBittorrent([]byte(s)) }
	a2 := func(s string) (Stats, error) { return decodeAria2([]byte(s)) }
	lt := func(s string) (Stats, error) { st, _, err := decodeLibtorrent([]byte(s)); return st, err }
	const size = 1 << 20
	tests := []struct {
		name    string
		decode  func(string) (Stats, error)
		in      string
		want    Stats
		wantErr string
	}{
		{"transmission seeding", tr, trSeeding, Stats{Size: size, Progress: 1, Seeding: true, NumPeers: 1, State: "seeding"}, ""},
		{"transmission leeching", tr, trLeeching, Stats{Uploaded: 16384, Downloaded: 524288, Size: size, Left: 524288,
			Progress: 0.5, NumPeers: 2, UploadRate: 10, DownloadRate: 1000, State: "downloading"}, ""},
		{"transmission error", tr, trError, Stats{Size: size, Left: size, State: "stopped", Error: "3: No data found!"}, ""},
		{"transmission unknown status", tr, `{"torrents":[{"status":99}]}`, Stats{State: "status-99"}, ""},
		{"transmission no torrent", tr, `{"torrents":[]}`, Stats{}, "0 torrents"},
		{"transmission garbage", tr, `{"torrents":`, Stats{}, "decode torrent-get"},
		{"qbittorrent seeding", qb, qbSeeding, Stats{Size: size, Progress: 1, Seeding: true, State: "stalledUP"}, ""},
		{"qbittorrent checking", qb, qbChecking, Stats{Size: size, Left: size, Progress: 0.25, Checking: true, State: "checkingUP"}, ""},
		{"qbittorrent leeching", qb, qbLeeching, Stats{Uploaded: 7, Downloaded: 1047576, Size: size, Left: 1000, Progress: 0.999,
			NumPeers: 3, UploadRate: 3, DownloadRate: 5000, State: "downloading"}, ""},
		{"qbittorrent missing files", qb, `[{"state":"missingFiles"}]`, Stats{State: "missingFiles", Error: "missingFiles"}, ""},
		{"qbittorrent two torrents", qb, `[{},{}]`, Stats{}, "2 torrents"},
		{"qbittorrent not a list", qb, `{"state":"uploading"}`, Stats{}, "decode torrents/info"},
		{"aria2 seeding", a2, a2Seeding, Stats{Downloaded: Unknown, Size: size, Progress: 1, Seeding: true, State: "active"}, ""},
		{"aria2 leeching", a2, a2Leeching, Stats{Downloaded: Unknown, Size: size, Left: size, State: "active"}, ""},
		{"aria2 checking", a2, a2Checking, Stats{Downloaded: Unknown, Size: size, Left: size, Checking: true, State: "active"}, ""},
		{"aria2 error", a2, `{"status":"error","errorCode":"1","errorMessage":"x","totalLength":"0"}`,
			Stats{Downloaded: Unknown, State: "error", Error: "1: x"}, ""},
		{"aria2 bad number", a2, `{"status":"active","totalLength":"12a"}`, Stats{}, "bad number"},
		{"aria2 negative", a2, `{"status":"active","uploadLength":"-5"}`, Stats{}, "bad number"},
		{"aria2 completed beyond total", a2, `{"status":"active","totalLength":"10","completedLength":"20"}`,
			Stats{Downloaded: Unknown, Size: 10, Progress: 2, State: "active"}, ""},
		{"libtorrent seeding", lt, ltSeeding, Stats{Size: size, Progress: 1, Seeding: true, State: "seeding"}, ""},
		{"libtorrent paused", lt, ltPaused, Stats{Size: size, Progress: 1, State: "seeding"}, ""},
		{"libtorrent status failed", lt, ltFailed, Stats{}, "boom"},
		{"libtorrent garbage", lt, `[1,2]`, Stats{}, "decode status"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.decode(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestDecodeLibtorrentID(t *testing.T) {
	_, id, err := decodeLibtorrent([]byte(ltFailed))
	if id != "9" || err == nil {
		t.Errorf("id %q err %v, want id 9 and an error", id, err)
	}
}

func TestDecodeAnnounce(t *testing.T) {
	tests := []struct {
		in      string
		refused bool
		wantErr bool
	}{
		{"d8:completei0e10:incompletei0e8:intervali1864e12:min intervali932e5:peers0:e", false, false},
		{"d14:failure reason63:Requested download is not authorized for use with this tracker.e", true, true},
		{"le", false, true},
		{"i3e", false, true},
		{"", false, true},
		{"d8:interval", false, true},
	}
	for _, tc := range tests {
		_, err := decodeAnnounce([]byte(tc.in))
		if (err != nil) != tc.wantErr || errors.Is(err, errTrackerRefused) != tc.refused {
			t.Errorf("decodeAnnounce(%q) = %v; want error %v, refused %v", tc.in, err, tc.wantErr, tc.refused)
		}
	}
}

func TestPercentEncode(t *testing.T) {
	if got, want := percentEncode([]byte{0x20, 0xff, 'a', 0}), "%20%FF%61%00"; got != want {
		t.Errorf("percentEncode = %q, want %q", got, want)
	}
}

func TestOptionsNormalize(t *testing.T) {
	base := Options{Kind: Libtorrent, TorrentFile: "x.torrent", Dir: "d"}
	tests := []struct {
		name    string
		mod     func(*Options)
		wantErr string
	}{
		{"defaults", func(o *Options) {}, ""},
		{"unknown kind", func(o *Options) { o.Kind = "utorrent" }, "unknown client kind"},
		{"unknown encryption", func(o *Options) { o.Encryption = "rc4" }, "unknown encryption"},
		{"no torrent", func(o *Options) { o.TorrentFile = "" }, "TorrentFile"},
		{"other loopback", func(o *Options) { o.IP = "127.3.2.1" }, ""},
		{"not loopback", func(o *Options) { o.IP = "10.0.0.1" }, "loopback"},
		{"ipv6", func(o *Options) { o.IP = "::1" }, "IPv4 loopback"},
		{"hostname", func(o *Options) { o.IP = "localhost" }, "loopback"},
		{"negative limit", func(o *Options) { o.UploadLimitKiB = -1 }, "negative"},
		{"dht transmission", func(o *Options) { o.Kind, o.DHT = Transmission, true }, "public routers"},
		{"dht qbittorrent", func(o *Options) { o.Kind, o.DHT = QBittorrent, true }, "public routers"},
		{"dht libtorrent", func(o *Options) {
			o.DHT, o.DHTNodes = true, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.9:6881")}
		}, ""},
		{"dht public node", func(o *Options) {
			o.DHT, o.DHTNodes = true, []netip.AddrPort{netip.MustParseAddrPort("67.215.246.10:6881")}
		}, "not a loopback"},
		{"no dir", func(o *Options) { o.Dir = "" }, "Dir"},
		{"port range", func(o *Options) { o.Port = 70000 }, "out of range"},
		{"api port negative", func(o *Options) { o.APIPort = -1 }, "out of range"},
		{"port equals api port", func(o *Options) { o.Kind, o.Port, o.APIPort = Aria2, 7000, 7000 }, "both 7000"},
		{"fixed port on loopback", func(o *Options) { o.Port, o.APIPort = 7000, 8000 }, ""},
		{"netns", func(o *Options) { o.Kind, o.Netns, o.IP, o.Port = Transmission, "sa-x", "10.77.0.5", 6881 }, ""},
		{"netns libtorrent", func(o *Options) { o.Netns, o.IP, o.Port = "sa-x", "10.77.0.5", 6881 }, ""},
		{"netns bad name", func(o *Options) { o.Netns, o.IP, o.Port = "../x", "10.77.0.5", 6881 }, "netns name"},
		{"netns no ip", func(o *Options) { o.Netns, o.Port = "sa-x", 6881 }, "IPv4"},
		{"netns loopback ip", func(o *Options) { o.Netns, o.IP, o.Port = "sa-x", "127.0.0.1", 6881 }, "unicast"},
		{"netns ipv6", func(o *Options) { o.Netns, o.IP, o.Port = "sa-x", "fd00::1", 6881 }, "IPv4"},
		{"netns no port", func(o *Options) { o.Netns, o.IP = "sa-x", "10.77.0.5" }, "Port is required"},
		{"netns derived api port too big", func(o *Options) { o.Kind, o.Netns, o.IP, o.Port = Aria2, "sa-x", "10.77.0.5", 65000 }, "set APIPort"},
		{"netns dht node in /24", func(o *Options) {
			o.Netns, o.IP, o.Port, o.DHT = "sa-x", "10.77.0.5", 6881, true
			o.DHTNodes = []netip.AddrPort{netip.MustParseAddrPort("10.77.0.9:6881"), netip.MustParseAddrPort("127.0.0.1:6881")}
		}, ""},
		{"netns dht node outside /24", func(o *Options) {
			o.Netns, o.IP, o.Port, o.DHT = "sa-x", "10.77.0.5", 6881, true
			o.DHTNodes = []netip.AddrPort{netip.MustParseAddrPort("10.77.1.9:6881")}
		}, "neither in 10.77.0.0/24"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.mod(&o)
			err := o.normalize()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if o.IP == "" || o.Encryption == "" || (o.Netns != "" && o.Kind != Libtorrent && o.APIPort != o.Port+1000) {
					t.Errorf("defaults not filled: %+v", o)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestMakePayloadDeterministic(t *testing.T) {
	a := MakePayload(t, t.TempDir(), 100_000, 3)
	b := MakePayload(t, t.TempDir(), 100_000, 3)
	c := MakePayload(t, t.TempDir(), 100_000, 4)
	read := func(p string) []byte {
		t.Helper()
		d, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	da, db, dc := read(a), read(b), read(c)
	if len(da) != 100_000 || !bytes.Equal(da, db) || bytes.Equal(da, dc) || filepath.Base(a) != filepath.Base(b) {
		t.Errorf("payloads: len %d, same seed equal %v, other seed equal %v, names %s %s",
			len(da), bytes.Equal(da, db), bytes.Equal(da, dc), a, b)
	}
	if empty := read(MakePayload(t, t.TempDir(), 0, 1)); len(empty) != 0 {
		t.Errorf("empty payload has %d bytes", len(empty))
	}
}

func TestMakeTorrent(t *testing.T) {
	src := MakePayload(t, t.TempDir(), 300_000, 9)
	for _, private := range []bool{false, true} {
		trackers := []string{"http://127.0.0.1:1/announce", "udp://127.0.0.1:1"}
		path, ih := MakeTorrent(t, src, 64<<10, trackers, private)
		mi, err := metainfo.LoadFromFile(path)
		if err != nil {
			t.Fatal(err)
		}
		info, err := mi.UnmarshalInfo()
		if err != nil {
			t.Fatal(err)
		}
		if mi.HashInfoBytes() != ih {
			t.Errorf("infohash %x, file says %x", ih, mi.HashInfoBytes())
		}
		gotPrivate := info.Private != nil && *info.Private
		if gotPrivate != private || info.PieceLength != 64<<10 || info.TotalLength() != 300_000 ||
			info.NumPieces() != 5 || info.Name != filepath.Base(src) {
			t.Errorf("info: private %v, piece length %d, length %d, pieces %d, name %s",
				gotPrivate, info.PieceLength, info.TotalLength(), info.NumPieces(), info.Name)
		}
		if mi.Announce != trackers[0] || len(mi.AnnounceList) != 2 || mi.AnnounceList[1][0] != trackers[1] {
			t.Errorf("announce %q, list %q", mi.Announce, mi.AnnounceList)
		}
	}
}

func TestCreateTorrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "dir")
	src, err := WritePayload(dir, 100_000, 5)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WritePayload(dir, -1, 5); err == nil {
		t.Error("WritePayload with a negative size: no error")
	}
	var paths []string
	for _, trackers := range [][]string{{"http://127.0.0.1:1/announce"}, {"http://127.0.0.1:2/announce"}} {
		path, ih, err := CreateTorrent(src, 32<<10, trackers, true)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(path, src+".") || !strings.HasSuffix(path, ".torrent") {
			t.Errorf("path %s, want %s.<hash>.torrent", path, src)
		}
		if again, _, err := CreateTorrent(src, 32<<10, trackers, true); err != nil || again != path {
			t.Errorf("the same torrent again: %s, %v; want %s", again, err, path)
		}
		mi, err := metainfo.LoadFromFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if mi.HashInfoBytes() != ih || mi.Announce != trackers[0] {
			t.Errorf("%s: infohash %x announce %s; want %x %s", path, mi.HashInfoBytes(), mi.Announce, ih, trackers[0])
		}
		paths = append(paths, path)
	}
	if paths[0] == paths[1] {
		t.Errorf("two torrents of one payload share the path %s", paths[0])
	}
	if _, _, err := CreateTorrent(filepath.Join(dir, "missing"), 32<<10, nil, false); err == nil {
		t.Error("CreateTorrent of a missing payload: no error")
	}
}

func TestInNetns(t *testing.T) {
	Require(t, "ip", "sh")
	cmd := exec.Command("sh", "-c", "echo hi")
	sh := cmd.Path
	if err := inNetns(cmd, "sa-x"); err != nil {
		t.Fatal(err)
	}
	want := []string{"ip", "netns", "exec", "sa-x", sh, "-c", "echo hi"}
	if filepath.Base(cmd.Path) != "ip" || !filepath.IsAbs(cmd.Path) || !slices.Equal(cmd.Args, want) {
		t.Errorf("command %s %q, want ip's path and %q", cmd.Path, cmd.Args, want)
	}
	if err := inNetns(exec.Command("no-such-program-swarmaudit"), "sa-x"); err == nil {
		t.Error("inNetns of a missing program: no error")
	}
}

func TestOpentrackerOptionsNormalize(t *testing.T) {
	tests := []struct {
		o       OpentrackerOptions
		wantIP  string
		wantErr string
	}{
		{OpentrackerOptions{}, "127.0.0.1", ""},
		{OpentrackerOptions{IP: "127.0.0.7", Port: 6969}, "127.0.0.7", ""},
		{OpentrackerOptions{IP: "10.0.0.1"}, "", "loopback"},
		{OpentrackerOptions{Port: 65536}, "", "out of range"},
		{OpentrackerOptions{Netns: "sa-x", IP: "10.77.0.3", Port: 6969}, "10.77.0.3", ""},
		{OpentrackerOptions{Netns: "sa-x", IP: "10.77.0.3"}, "", "port is required"},
		{OpentrackerOptions{Netns: "sa-x", Port: 6969}, "", "IPv4"},
		{OpentrackerOptions{Netns: "a/b", IP: "10.77.0.3", Port: 6969}, "", "netns name"},
	}
	for _, tc := range tests {
		o := tc.o
		err := o.normalize()
		if tc.wantErr == "" && (err != nil || o.IP != tc.wantIP) || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%+v: IP %s, err %v; want IP %s, error containing %q", tc.o, o.IP, err, tc.wantIP, tc.wantErr)
		}
	}
}

func TestCheckNetnsName(t *testing.T) {
	for name, ok := range map[string]bool{"sa-tc-1a2b3c-0": true, "a_b.c": true, "": false, ".": false, "..": false,
		"a/b": false, "a b": false, strings.Repeat("x", 64): true, strings.Repeat("x", 65): false} {
		if err := checkNetnsName(name); (err == nil) != ok {
			t.Errorf("checkNetnsName(%q) = %v, want ok %v", name, err, ok)
		}
	}
}

func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := FreePort(t, "127.0.0.1")
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d not free: %v", p, err)
		}
		l.Close()
	}
}

// fakeTB records Skip and Fatal instead of ending the test.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper()          {}
func (f *fakeTB) Skip(args ...any) { f.skipped, f.msg = true, fmt.Sprint(args...) }
func (f *fakeTB) Fatal(args ...any) {
	f.failed, f.msg = true, fmt.Sprint(args...)
}

func TestRequire(t *testing.T) {
	const missing = "no-such-program-swarmaudit"
	tests := []struct {
		ci          string
		names       []string
		skip, fatal bool
	}{
		{"", []string{missing}, true, false},
		{"false", []string{missing}, true, false},
		{"true", []string{missing}, false, true},
		{"true", []string{"sh"}, false, false},
		{"", []string{"sh", missing}, true, false},
	}
	for _, tc := range tests {
		t.Setenv("CI", tc.ci)
		f := &fakeTB{TB: t}
		Require(f, tc.names...)
		if f.skipped != tc.skip || f.failed != tc.fatal {
			t.Errorf("CI=%q Require(%v): skipped %v failed %v, want %v %v", tc.ci, tc.names, f.skipped, f.failed, tc.skip, tc.fatal)
		}
		if (tc.skip || tc.fatal) && !strings.Contains(f.msg, missing) {
			t.Errorf("message %q does not name %s", f.msg, missing)
		}
	}
}

// TestProcessKillGroup: kill ends the whole process group, children
// included, and reaps the leader; a second kill is a no-op.
func TestProcessKillGroup(t *testing.T) {
	Require(t, "sh", "sleep")
	dir := t.TempDir()
	p := newProcess()
	cmd := exec.Command("sh", "-c", `sleep 60 & echo $! > child.pid; wait`)
	if err := p.launch(cmd, dir, "log", []string{"PATH=" + os.Getenv("PATH")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	var child int
	deadline := time.Now().Add(10 * time.Second)
	for child == 0 {
		if b, err := os.ReadFile(filepath.Join(dir, "child.pid")); err == nil {
			child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			t.Fatal("the shell never started its child")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p.hasExited() {
		t.Fatal("leader exited early")
	}
	p.kill()
	p.kill()
	if !p.hasExited() || !strings.Contains(p.log(), "signal: killed") {
		t.Errorf("leader not killed and reaped; log: %s", p.log())
	}
	// The orphaned child is killed too: gone, or a zombie waiting for init.
	for {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil || strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d still running: %s", child, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCrashed: a client whose process died of SIGSEGV has crashed; one
// that exited, or that the test killed, has not.
func TestCrashed(t *testing.T) {
	for _, tt := range []struct {
		name  string
		shell string
		want  bool
	}{
		{"segmentation fault", "kill -SEGV $$", true},
		{"abort", "kill -ABRT $$", true},
		{"exit status", "exit 3", false},
		{"killed", "kill -KILL $$", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{Kind: Libtorrent, proc: newProcess()}
			if err := c.proc.launch(exec.Command("sh", "-c", tt.shell), t.TempDir(), "log", nil); err != nil {
				t.Fatal(err)
			}
			defer c.proc.kill()
			if !c.proc.waitExit(10 * time.Second) {
				t.Fatal("the process did not end")
			}
			how, got := c.Crashed()
			if got != tt.want {
				t.Fatalf("crashed %v (%q, process: %q), want %v", got, how, c.proc.how, tt.want)
			}
		})
	}
}
