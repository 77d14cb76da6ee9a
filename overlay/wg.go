package overlay

import (
	"fmt"
	"net"
	"net/netip"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// wgConfigurer reads and changes one WireGuard device's configuration. It is
// the OS boundary of Reconfig's peer handling; fakeWG (in the tests) is its
// in-memory twin.
type wgConfigurer interface {
	// Device returns the device's current configuration and per-peer
	// statistics.
	Device() (*wgtypes.Device, error)
	// ConfigureDevice applies cfg with wgctrl's semantics: nil fields are
	// left alone; each PeerConfig adds the peer, or with Remove deletes it,
	// or with UpdateOnly changes it only if it exists; AllowedIPs are
	// appended unless ReplaceAllowedIPs. Peers not named are untouched,
	// sessions included.
	ConfigureDevice(cfg wgtypes.Config) error
	// Close releases the configurer's resources; the device stays.
	Close() error
}

// wgctrlConfigurer talks to the device over its UAPI socket through wgctrl,
// the same way `wg` does.
type wgctrlConfigurer struct {
	c    *wgctrl.Client
	name string
}

func newWgctrlConfigurer(name string) (*wgctrlConfigurer, error) {
	c, err := wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("opening wgctrl: %w", err)
	}
	return &wgctrlConfigurer{c: c, name: name}, nil
}

func (w *wgctrlConfigurer) Device() (*wgtypes.Device, error) { return w.c.Device(w.name) }

func (w *wgctrlConfigurer) ConfigureDevice(cfg wgtypes.Config) error {
	return w.c.ConfigureDevice(w.name, cfg)
}

func (w *wgctrlConfigurer) Close() error { return w.c.Close() }

// prefixToIPNet and ipNetToPrefix convert between netip and the net types
// wgctrl speaks.
func prefixToIPNet(p netip.Prefix) net.IPNet {
	a := p.Addr().Unmap()
	return net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}

func ipNetToPrefix(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 32 {
		a = a.Unmap()
	}
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}

func udpAddrToAddrPort(u *net.UDPAddr) netip.AddrPort {
	if u == nil {
		return netip.AddrPort{}
	}
	ap := u.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
