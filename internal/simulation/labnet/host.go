package labnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Caps are a host's bandwidth caps and, optionally, its address.
type Caps struct {
	// UpKiB caps what the host sends, in KiB/s of Ethernet frames (0 =
	// uncapped): a tbf on the host's own interface, inside its netns.
	UpKiB int
	// DownKiB caps what the host receives, the same way (0 = uncapped): a
	// tbf on the bridge-side veth, in the root namespace.
	DownKiB int
	// IP is the host's address; the zero Addr means the next free one from
	// the subnet's .10 on.
	IP netip.Addr
}

// Host is one lab host: a netns joined to the bridge by a veth pair.
type Host struct {
	Name  string
	Netns string // "<prefix>-<name>"
	Veth  string // bridge-side end, in the root namespace: "<prefix>-h<N>"
	Dev   string // the host's end, inside its netns
	IP    netip.Addr
	Caps  Caps // as asked, with IP set to the host's address
	// Public is what the lab sees the host as: for a host behind a NAT
	// (AddNATHost), its router's address; otherwise IP.
	Public netip.Addr
}

var hostNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// portForwarding is the bridge port state BR_STATE_FORWARDING in
// /sys/class/net/<port>/brport/state.
const portForwarding = "3"

// AddHost makes a host (name: 1-32 characters [a-z0-9_-], starting with
// [a-z0-9]): netns "<prefix>-<name>" with loopback up and IPv6
// off, a veth pair whose host end has the address (subnet route only, no
// default route) and whose other end is a bridge port, and the caps. On
// failure it removes what it made. It returns when the bridge forwards for
// the host.
func (n *Net) AddHost(ctx context.Context, name string, caps Caps) (*Host, error) {
	if !hostNameRE.MatchString(name) {
		return nil, fmt.Errorf("labnet: host name %q: want 1-32 characters [a-z0-9_-] starting with [a-z0-9]", name)
	}
	if caps.UpKiB < 0 || caps.DownKiB < 0 {
		return nil, fmt.Errorf("labnet: host %s: negative cap %+v", name, caps)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("labnet: add host %s: network %s is closed", name, n.Prefix)
	}
	for _, h := range n.hosts {
		if h.Name == name {
			return nil, fmt.Errorf("labnet: host %s exists", name)
		}
	}
	ip, err := n.pickIP(caps.IP)
	if err != nil {
		return nil, fmt.Errorf("labnet: host %s: %w", name, err)
	}
	h := &Host{
		Name:  name,
		Netns: n.Prefix + "-" + name,
		Veth:  n.Prefix + "-h" + strconv.Itoa(n.nextIdx),
		Dev:   hostDev,
		IP:    ip,
		Caps:  caps,
	}
	h.Caps.IP, h.Public = ip, ip
	if len(h.Veth) > maxIfName {
		return nil, fmt.Errorf("labnet: host %s: veth name %s is longer than %d characters", name, h.Veth, maxIfName)
	}
	n.nextIdx++
	mark := len(n.made)
	if err := n.buildHost(ctx, h); err != nil {
		// undo this host only; what cannot be removed stays recorded for Close
		mine := slices.Clone(n.made[mark:])
		n.made = n.made[:mark]
		slices.Reverse(mine) // newest first: the veth before the netns
		for _, r := range mine {
			if rerr := remove(context.WithoutCancel(ctx), r); rerr != nil {
				err = errors.Join(err, rerr)
				n.made = append(n.made, r)
			}
		}
		return nil, fmt.Errorf("labnet: add host %s: %w", name, err)
	}
	n.hosts = append(n.hosts, h)
	return h, nil
}

// pickIP checks an asked address, or finds the next free one from .10.
func (n *Net) pickIP(want netip.Addr) (netip.Addr, error) {
	used := map[netip.Addr]bool{n.BridgeIP: true}
	for _, h := range n.hosts {
		used[h.IP] = true
	}
	network := n.Subnet.Addr()
	broadcast := lastAddr(n.Subnet)
	if want.IsValid() {
		switch {
		case !n.Subnet.Contains(want):
			return netip.Addr{}, fmt.Errorf("address %s is outside %s", want, n.Subnet)
		case want == network || want == broadcast:
			return netip.Addr{}, fmt.Errorf("address %s is the network or broadcast address of %s", want, n.Subnet)
		case used[want]:
			return netip.Addr{}, fmt.Errorf("address %s is taken", want)
		}
		return want, nil
	}
	a := network
	for range firstHostOffset {
		a = a.Next()
	}
	for ; a.IsValid() && a.Less(broadcast); a = a.Next() {
		if !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address in %s from .%d on", n.Subnet, firstHostOffset)
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (n *Net) buildHost(ctx context.Context, h *Host) error {
	if err := run(ctx, "ip", "netns", "add", h.Netns); err != nil {
		return err
	}
	n.made = append(n.made, resource{netns: true, name: h.Netns})
	// IPv6 off before the veth exists: the new device inherits "default".
	if err := run(ctx, "ip", "netns", "exec", h.Netns, "sysctl", "-q", "-w",
		"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
		return err
	}
	if err := run(ctx, "ip", "-n", h.Netns, "link", "set", "lo", "up"); err != nil {
		return err
	}
	// gso_max_segs 1 on both ends: TCP hands the link one MSS per packet,
	// so the veth counters see the frames a real 1500-byte Ethernet carries
	// (the bridge takes the smallest value of its ports, which covers what
	// the root namespace sends through it). The price, measured on 2 cores:
	// an uncapped link carries ~73 MiB/s with one TCP flow (~110 MiB/s with
	// eight) instead of ~1.9 GiB/s, far above what the lab's clients move.
	mtu := strconv.Itoa(MTU)
	if err := run(ctx, "ip", "link", "add", h.Veth, "mtu", mtu, "gso_max_segs", "1", "type", "veth",
		"peer", "name", h.Dev, "mtu", mtu, "gso_max_segs", "1", "netns", h.Netns); err != nil {
		return err
	}
	n.made = append(n.made, resource{name: h.Veth})
	if err := disableIPv6Link(h.Veth); err != nil {
		return err
	}
	if err := run(ctx, "ip", "link", "set", h.Veth, "master", n.Bridge, "up"); err != nil {
		return err
	}
	pfx := netip.PrefixFrom(h.IP, n.Subnet.Bits())
	if err := run(ctx, "ip", "-n", h.Netns, "addr", "add", pfx.String(), "dev", h.Dev); err != nil {
		return err
	}
	if err := run(ctx, "ip", "-n", h.Netns, "link", "set", h.Dev, "up"); err != nil {
		return err
	}
	if h.Caps.UpKiB > 0 {
		if err := run(ctx, "tc", append([]string{"-n", h.Netns, "qdisc", "replace", "dev", h.Dev, "root"}, tbf(h.Caps.UpKiB)...)...); err != nil {
			return err
		}
	}
	if h.Caps.DownKiB > 0 {
		if err := run(ctx, "tc", append([]string{"qdisc", "replace", "dev", h.Veth, "root"}, tbf(h.Caps.DownKiB)...)...); err != nil {
			return err
		}
	}
	return waitForwarding(ctx, h.Veth)
}

// tbf returns the tbf qdisc arguments for a cap of kib KiB/s.
//
// tbf counts whole frames (Ethernet header included), so the cap is on wire
// bytes; TCP payload gets about 1448/1514 of it. The bucket (burst) is 10 ms
// of the rate, and at least two full frames: big enough that the kernel's
// timer granularity never leaves the link idle with data queued (which would
// undershoot the rate), small enough that a transfer's first moment cannot run
// noticeably above the cap. The queue holds 50 ms of data beyond the bucket
// ("latency"): more than TCP needs to keep the bucket busy at a lab RTT of
// well under a millisecond, and little enough that the queueing delay peers see
// stays that of an ordinary access link, not seconds of bufferbloat.
//
// Measured (kernel 6.18, 2 cores, wire bytes over 3 s after 1.5 s of warm-up):
// from 64 KiB/s to 16 MiB/s, with 1 or 8 TCP flows, within 0.2% of the cap,
// as good as or better than a 64 KB bucket with 100 ms of queue, or a bucket of
// two frames (up to 0.7% under at 4 MiB/s). At 64 MiB/s 8 flows still hold the
// cap; one flow gets ~82%, CPU-bound by the unsegmented packets (see AddHost).
func tbf(kib int) []string {
	rate := int64(kib) * 1024 // bytes/s
	burst := max(rate/100, 2*(MTU+14))
	return []string{"tbf", "rate", strconv.FormatInt(rate*8, 10) + "bit",
		"burst", strconv.FormatInt(burst, 10), "latency", "50ms"}
}

// waitForwarding waits, at most 5 s, until the bridge forwards on port dev.
func waitForwarding(ctx context.Context, dev string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	p := "/sys/class/net/" + dev + "/brport/state"
	for {
		b, err := os.ReadFile(p)
		if err == nil && strings.TrimSpace(string(b)) == portForwarding {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bridge port %s not forwarding (state %q, %v): %w", dev, strings.TrimSpace(string(b)), err, ctx.Err())
		case <-tick.C:
		}
	}
}

// Command returns a command that runs name inside the host's netns (through
// ip netns exec, which execs name: the command's process is name itself).
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Netns, name}, args...)...)
}

// Counters are what crossed a host's link, in Ethernet frames (headers
// included), since the host was added.
type Counters struct {
	SentBytes, SentPackets uint64 // what the host sent
	RecvBytes, RecvPackets uint64 // what the host received
}

// Counters reads the host's link counters from the bridge-side veth in the
// root namespace, where the host cannot change them: what that end received
// the host sent, what it transmitted the host received.
func (h *Host) Counters(ctx context.Context) (Counters, error) {
	if err := ctx.Err(); err != nil {
		return Counters{}, err
	}
	var c Counters
	for _, f := range []struct {
		file string
		dst  *uint64
	}{
		{"rx_bytes", &c.SentBytes}, {"rx_packets", &c.SentPackets},
		{"tx_bytes", &c.RecvBytes}, {"tx_packets", &c.RecvPackets},
	} {
		p := "/sys/class/net/" + h.Veth + "/statistics/" + f.file
		b, err := os.ReadFile(p)
		if err != nil {
			return Counters{}, fmt.Errorf("labnet: counters of host %s: %w", h.Name, err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return Counters{}, fmt.Errorf("labnet: counters of host %s: %s: %w", h.Name, p, err)
		}
		*f.dst = v
	}
	return c, nil
}
