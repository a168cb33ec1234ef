package testclients

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// netnsDir is where `ip netns add` mounts named network namespaces.
const netnsDir = "/run/netns"

// checkNetnsName accepts the names `ip netns` accepts that are also safe as
// one path element: letters, digits, '-', '_' and '.', at most 64 bytes.
func checkNetnsName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 64 {
		return fmt.Errorf("netns name %q: want 1 to 64 letters, digits, '-', '_' or '.'", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.", r)) {
			return fmt.Errorf("netns name %q: character %q: want letters, digits, '-', '_' or '.'", name, r)
		}
	}
	return nil
}

// parseNetnsIP parses an address for a client or tracker in a namespace:
// IPv4 unicast (loopback would be the namespace's own, out of the caller's
// reach).
func parseNetnsIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is4() {
		return netip.Addr{}, fmt.Errorf("%q: want an IPv4 address of the namespace", s)
	}
	if ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, fmt.Errorf("%s: want a unicast address the root namespace can reach", ip)
	}
	return ip, nil
}

// lan24 is the /24 around ip: in a namespace, the addresses a client's API
// accepts unauthenticated requests from and its DHT nodes may live in.
func lan24(ip netip.Addr) netip.Prefix {
	p, err := ip.Prefix(24)
	if err != nil {
		panic(fmt.Sprintf("testclients: /24 of %s: %v", ip, err)) // ip is IPv4: cannot happen
	}
	return p
}

// netnsReady checks that `ip netns exec` can run a program in netns name.
func netnsReady(name string) error {
	if err := have("ip"); err != nil {
		return fmt.Errorf("netns %s: %w: %v", name, ErrNotInstalled, err)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("netns %s: ip netns exec needs root", name)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	return nil
}

// inNetns rewrites cmd to run as `ip netns exec NAME PROGRAM ARGS...`.
// ip enters the namespace (and a private mount namespace, to remount /sys)
// and then execs PROGRAM without forking: the PID the caller gets, and with
// it the process group and the parent-death signal, are PROGRAM's.
func inNetns(cmd *exec.Cmd, name string) error {
	if cmd.Err != nil {
		return cmd.Err
	}
	if len(cmd.Args) == 0 || !filepath.IsAbs(cmd.Path) {
		return errors.New("netns: command without an absolute program path")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	cmd.Args = append([]string{"ip", "netns", "exec", name, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = ip
	return nil
}
