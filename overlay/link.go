package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeProtocol marks the routes Latch installs (the rtnetlink "protocol"
// of a route, shown as "proto 76" by `ip route`), so that Reconfig removes
// only routes it added and never one an administrator put on the interface.
const routeProtocol netlink.RouteProtocol = 76

// linkConfigurer changes one network interface's addresses, routes and
// state. It is the OS boundary of Reconfig's interface handling; fakeLink
// (in the tests) is its in-memory twin.
type linkConfigurer interface {
	// Addrs returns the interface's addresses, leaving out IPv6
	// link-local ones, which the kernel manages.
	Addrs() ([]netip.Prefix, error)
	AddAddr(p netip.Prefix) error
	DelAddr(p netip.Prefix) error
	// Routes returns the routes through the interface that Latch
	// installed (main table, routeProtocol), and no others.
	Routes() ([]netip.Prefix, error)
	// AddRoute routes p into the interface, marked as Latch's.
	AddRoute(p netip.Prefix) error
	DelRoute(p netip.Prefix) error
	// SetUp brings the interface up; it is a no-op if it is up already.
	SetUp() error
}

// netlinkLink configures an interface through rtnetlink, in the network
// namespace of the calling process.
type netlinkLink struct {
	index int
}

func newNetlinkLink(name string) (*netlinkLink, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("finding interface %s: %w", name, err)
	}
	return &netlinkLink{index: l.Attrs().Index}, nil
}

// link returns a handle naming the interface by index only, which is all
// netlink's calls read.
func (l *netlinkLink) link() netlink.Link {
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: l.index}}
}

func (l *netlinkLink) Addrs() ([]netip.Prefix, error) {
	as, err := netlink.AddrList(l.link(), netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range as {
		if a.IPNet == nil {
			continue
		}
		p, ok := ipNetToPrefix(*a.IPNet)
		if !ok || (p.Addr().Is6() && p.Addr().IsLinkLocalUnicast()) {
			continue
		}
		// Addresses are kept as the host address with its prefix length,
		// not masked: 100.64.0.1/32 is an address, not a network.
		a, _ := netip.AddrFromSlice(a.IP)
		out = append(out, netip.PrefixFrom(a.Unmap(), p.Bits()))
	}
	return out, nil
}

func (l *netlinkLink) addr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().Unmap().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().Unmap().BitLen())}}
	if p.Addr().Is6() {
		// A TUN has no neighbours to collide with; duplicate address
		// detection would only delay the address.
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func (l *netlinkLink) AddAddr(p netip.Prefix) error { return netlink.AddrAdd(l.link(), l.addr(p)) }

func (l *netlinkLink) DelAddr(p netip.Prefix) error {
	err := netlink.AddrDel(l.link(), l.addr(p))
	if errors.Is(err, unix.EADDRNOTAVAIL) {
		return nil
	}
	return err
}

func (l *netlinkLink) route(p netip.Prefix) *netlink.Route {
	n := prefixToIPNet(p.Masked())
	return &netlink.Route{
		LinkIndex: l.index,
		Dst:       &n,
		Scope:     netlink.SCOPE_LINK,
		Protocol:  routeProtocol,
		Table:     unix.RT_TABLE_MAIN,
	}
}

func (l *netlinkLink) Routes() ([]netip.Prefix, error) {
	filter := &netlink.Route{LinkIndex: l.index, Table: unix.RT_TABLE_MAIN, Protocol: routeProtocol}
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		if p, ok := ipNetToPrefix(*r.Dst); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (l *netlinkLink) AddRoute(p netip.Prefix) error { return netlink.RouteAdd(l.route(p)) }

func (l *netlinkLink) DelRoute(p netip.Prefix) error {
	err := netlink.RouteDel(l.route(p))
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

func (l *netlinkLink) SetUp() error {
	link, err := netlink.LinkByIndex(l.index)
	if err != nil {
		return err
	}
	if link.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	return netlink.LinkSetUp(link)
}
