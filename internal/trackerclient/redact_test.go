package trackerclient

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	const pk = "0123456789abcdef0123456789abcdef"
	tests := []struct{ in, want string }{
		{"http://tracker.example/" + pk + "/announce", "http://tracker.example/REDACTED/announce"},
		{"https://tracker.example/announce/" + pk, "https://tracker.example/announce/REDACTED"},
		{"http://tracker.example:2710/announce?passkey=" + pk + "&x=1", "http://tracker.example:2710/announce?passkey=REDACTED&x=1"},
		{"http://user:" + pk + "@tracker.example/announce", "http://tracker.example/announce"},
		{"udp://tracker.example:6969/" + pk + "/announce", "udp://tracker.example:6969/REDACTED/announce"},
		{"http://tracker.example/announce.php?torrent_pass=" + pk, "http://tracker.example/announce.php?torrent_pass=REDACTED"},
		{"http://tracker.example/announce", "http://tracker.example/announce"},
		{"::not a url " + pk, "(unparseable tracker URL)"},
	}
	for _, tt := range tests {
		got := Redact(tt.in)
		if got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(got, pk) {
			t.Errorf("Redact(%q) leaks the passkey", tt.in)
		}
	}
}
