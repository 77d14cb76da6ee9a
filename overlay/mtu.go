package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// WireGuard's per-packet overhead on the underlay: outer IP header, UDP
// header (8) and WireGuard's data header (16) and tag (16).
const (
	overheadIPv4 = 20 + 8 + 32
	overheadIPv6 = 40 + 8 + 32
)

// DefaultMTU is the overlay MTU when none is given: the IPv6 minimum, which
// fits inside any underlay that can carry IPv6 at all.
const DefaultMTU = 1280

// ErrLoopbackRoute is returned by UnderlayMTU when the destination is this
// host itself, so the route says nothing about the underlay to peers.
var ErrLoopbackRoute = errors.New("destination is reached through loopback")

// OverlayMTU returns the largest overlay MTU whose WireGuard packets fit an
// underlay path of MTU underlay: 60 bytes less over IPv4, 80 over IPv6.
// Anything larger makes bulk TCP collapse when the kernel cannot send the
// encrypted packets.
func OverlayMTU(underlay int, ipv6 bool) int {
	if ipv6 {
		return underlay - overheadIPv6
	}
	return underlay - overheadIPv4
}

// UnderlayMTU returns the MTU of the path this host would use to send to
// dst (typically the coordinator): the route's MTU if the route sets one,
// else the outgoing interface's. It reads the routing table only; nothing
// is sent.
func UnderlayMTU(dst netip.Addr) (int, error) {
	routes, err := netlink.RouteGet(net.IP(dst.Unmap().AsSlice()))
	if err != nil {
		return 0, fmt.Errorf("looking up route to %v: %w", dst, err)
	}
	if len(routes) == 0 {
		return 0, fmt.Errorf("looking up route to %v: no route", dst)
	}
	r := routes[0]
	link, err := netlink.LinkByIndex(r.LinkIndex)
	if err != nil {
		return 0, fmt.Errorf("looking up interface of route to %v: %w", dst, err)
	}
	if link.Attrs().Flags&net.FlagLoopback != 0 {
		return 0, fmt.Errorf("underlay MTU towards %v: %w", dst, ErrLoopbackRoute)
	}
	if r.MTU > 0 {
		return r.MTU, nil
	}
	return link.Attrs().MTU, nil
}
