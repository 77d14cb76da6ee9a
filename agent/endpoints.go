package agent

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// maxEndpoints bounds what a node reports.
const maxEndpoints = 16

// LocalEndpoints returns where peers may reach this node's WireGuard
// socket: every global unicast address of an up, non-loopback interface
// other than the overlay interface, with port; never an overlay address
// (100.64.0.0/10, or the /48 of self's IPv6 overlay address). IPv4 comes
// first; order within a family follows the interfaces.
func LocalEndpoints(addrs []InterfaceAddr, overlayIface string, self []netip.Prefix, port int) []netip.AddrPort {
	overlayNets := OverlayRoutes(self)
	var v4, v6 []netip.AddrPort
	for _, a := range addrs {
		if !a.Up || a.Loopback || a.Interface == overlayIface {
			continue
		}
		ip := a.Addr.Unmap()
		if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.Zone() != "" {
			continue
		}
		if slices.ContainsFunc(overlayNets, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			continue
		}
		ap := netip.AddrPortFrom(ip, uint16(port))
		if ip.Is4() {
			if !slices.Contains(v4, ap) {
				v4 = append(v4, ap)
			}
		} else if !slices.Contains(v6, ap) {
			v6 = append(v6, ap)
		}
	}
	out := append(v4, v6...)
	if len(out) > maxEndpoints {
		out = out[:maxEndpoints]
	}
	return out
}

// systemInterfaceAddrs reads the node's interface addresses.
func systemInterfaceAddrs() ([]InterfaceAddr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	var out []InterfaceAddr
	for _, ifc := range ifs {
		as, err := ifc.Addrs()
		if err != nil {
			continue // the interface went away
		}
		for _, a := range as {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			out = append(out, InterfaceAddr{
				Interface: ifc.Name,
				Up:        ifc.Flags&net.FlagUp != 0,
				Loopback:  ifc.Flags&net.FlagLoopback != 0,
				Addr:      ip.Unmap(),
			})
		}
	}
	return out, nil
}
