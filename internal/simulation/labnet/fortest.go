package labnet

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"
)

// ForTest creates a lab network of the calling test alone (prefix
// "<name><pid mod 1000>", a /24 in 10.<octet>.<pid mod 250>.0, octet
// naming the test package's range) and closes it when the test ends,
// after the cleanups registered later (the clients started in it). It
// skips the test without root or ip, or fails it when CI=true.
func ForTest(tb testing.TB, ctx context.Context, name string, octet byte) *Net {
	tb.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip")
	}
	if len(missing) > 0 {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("a lab network needs %v, and CI=true", missing)
		}
		tb.Skipf("a lab network needs %v", missing)
	}
	pid := os.Getpid()
	cfg := Config{Prefix: fmt.Sprintf("%s%03d", name, pid%1000), Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, octet, byte(pid % 250), 0}), 24)}
	n, err := Create(ctx, cfg)
	if err != nil {
		tb.Fatalf("lab network: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.Close(context.Background()); err != nil {
			tb.Errorf("close the lab network: %v", err)
		}
	})
	return n
}
