package overlay

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// maxKeepalive is the largest persistent keepalive WireGuard can carry
// (a 16-bit count of seconds).
const maxKeepalive = 65535 * time.Second

// Reconfig makes the data plane match cfg, changing only what differs:
//   - the filter's rules and addresses, first, so that narrowed access
//     holds before anything else changes;
//   - the private key and listen port, if they differ;
//   - peers: absent ones are added, ones not in cfg removed, and changed
//     ones updated in place (allowed IPs, keepalive, an endpoint cfg
//     changed); unchanged peers are not touched, so their sessions go on;
//   - addresses and Latch's routes on the interface: missing ones added,
//     stale ones removed; the interface is brought up.
//
// An invalid cfg (zero or duplicate keys, invalid prefixes, out-of-range
// values) is refused whole before anything changes. Invalid filter rules
// are the exception: they are left out (never widening access), the valid
// rest applies, and the error names them. Other failures do not stop the
// remaining steps; the error joins them, and calling Reconfig again
// converges.
func (e *Engine) Reconfig(cfg Config) error {
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("reconfiguring %s: %w", e.name, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	var errs []error
	if err := e.setRulesLocked(cfg.Rules, selfAddrs(cfg.Addresses)); err != nil {
		errs = append(errs, fmt.Errorf("setting filter rules: %w", err))
	}
	if err := e.configureWireGuardLocked(&cfg); err != nil {
		errs = append(errs, fmt.Errorf("configuring WireGuard: %w", err))
	}
	if err := e.configureLinkLocked(&cfg); err != nil {
		errs = append(errs, fmt.Errorf("configuring interface: %w", err))
	}
	if e.dev != nil {
		if err := e.dev.Up(); err != nil {
			errs = append(errs, fmt.Errorf("bringing device up: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reconfiguring %s: %w", e.name, err)
	}
	return nil
}

// validate checks everything Reconfig needs before changing anything. Filter
// rules are checked by the filter itself.
func (c *Config) validate() error {
	var zero wgtypes.Key
	if subtle.ConstantTimeCompare(c.PrivateKey[:], zero[:]) == 1 {
		return errors.New("no private key")
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		return fmt.Errorf("listen port %d out of range", c.ListenPort)
	}
	for _, p := range c.Addresses {
		if !p.IsValid() {
			return fmt.Errorf("address %v: invalid prefix", p)
		}
	}
	for _, p := range c.Routes {
		if !p.IsValid() {
			return fmt.Errorf("route %v: invalid prefix", p)
		}
	}
	self := wire.NodePublic(c.PrivateKey.PublicKey())
	seen := make(map[wire.NodePublic]bool, len(c.Peers))
	for _, p := range c.Peers {
		switch {
		case p.Key.IsZero():
			return errors.New("peer with zero key")
		case p.Key == self:
			return fmt.Errorf("peer %s has this node's own key", p.Key.ShortString())
		case seen[p.Key]:
			return fmt.Errorf("peer %s listed twice", p.Key.ShortString())
		case p.Keepalive < 0 || p.Keepalive > maxKeepalive:
			return fmt.Errorf("peer %s: keepalive %v out of range", p.Key.ShortString(), p.Keepalive)
		}
		seen[p.Key] = true
		for _, a := range p.AllowedIPs {
			if !a.IsValid() {
				return fmt.Errorf("peer %s: allowed IP %v: invalid prefix", p.Key.ShortString(), a)
			}
		}
	}
	return nil
}

// selfAddrs returns the node's own addresses as single-address prefixes:
// the filter admits inbound packets to these only, and an address given
// with a subnet length (100.64.0.1/10) must not make the whole subnet local.
func selfAddrs(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		a := p.Addr().Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

// setRulesLocked hands the rules to the filter unless they are what it
// already has; swapping identical rules would make every inbound flow be
// checked again for nothing.
func (e *Engine) setRulesLocked(rules []wire.FilterRule, self []netip.Prefix) error {
	if e.haveRules && slices.Equal(self, e.self) && slices.EqualFunc(rules, e.rules, ruleEqual) {
		return nil
	}
	err := e.filter.SetRules(rules, self)
	e.rules = slices.Clone(rules)
	for i := range e.rules {
		e.rules[i].Sources = slices.Clone(e.rules[i].Sources)
		e.rules[i].Protocols = slices.Clone(e.rules[i].Protocols)
		e.rules[i].Ports = slices.Clone(e.rules[i].Ports)
	}
	e.self = slices.Clone(self)
	e.haveRules = true
	return err
}

func ruleEqual(a, b wire.FilterRule) bool {
	return a.ID == b.ID && a.Expires.Equal(b.Expires) &&
		slices.Equal(a.Sources, b.Sources) && slices.Equal(a.Protocols, b.Protocols) && slices.Equal(a.Ports, b.Ports)
}

// configureWireGuardLocked computes the difference between the device and
// cfg and applies it in one call, or none if nothing differs.
func (e *Engine) configureWireGuardLocked(cfg *Config) error {
	dev, err := e.wg.Device()
	if err != nil {
		return fmt.Errorf("reading device: %w", err)
	}
	var wc wgtypes.Config
	changed := false
	if subtle.ConstantTimeCompare(dev.PrivateKey[:], cfg.PrivateKey[:]) != 1 {
		key := cfg.PrivateKey
		wc.PrivateKey = &key
		changed = true
	}
	// Zero means "any port, and keep it once picked".
	if cfg.ListenPort != 0 && dev.ListenPort != cfg.ListenPort {
		port := cfg.ListenPort
		wc.ListenPort = &port
		changed = true
	}

	current := make(map[wire.NodePublic]*wgtypes.Peer, len(dev.Peers))
	for i := range dev.Peers {
		current[wire.NodePublic(dev.Peers[i].PublicKey)] = &dev.Peers[i]
	}
	self := wire.NodePublic(cfg.PrivateKey.PublicKey())
	wanted := make(map[wire.NodePublic]bool, len(cfg.Peers))
	held := make(map[wire.NodePublic]time.Duration)
	var added []wire.NodePublic
	for _, p := range cfg.Peers {
		wanted[p.Key] = true
		cur := current[p.Key]
		if cur == nil {
			added = append(added, p.Key)
		}
		// A new peer's keepalive is held back on the side with the
		// higher key, and stays held until its kick (kick.go).
		_, wasHeld := e.heldKeepalive[p.Key]
		hold := e.dev != nil && p.Keepalive > 0 && !lowerKey(self, p.Key) && (cur == nil || wasHeld)
		if hold {
			held[p.Key] = p.Keepalive
		}
		pc, ok := e.peerChange(p, cur, hold)
		if ok {
			wc.Peers = append(wc.Peers, pc)
		}
	}
	for _, p := range dev.Peers {
		k := wire.NodePublic(p.PublicKey)
		if !wanted[k] {
			wc.Peers = append(wc.Peers, wgtypes.PeerConfig{PublicKey: p.PublicKey, Remove: true})
		}
	}
	if !changed && len(wc.Peers) == 0 {
		e.heldKeepalive = held
		return nil
	}
	if err := e.wg.ConfigureDevice(wc); err != nil {
		// Nothing is held that the device did not take: the next
		// Reconfig sets every keepalive as cfg says.
		clear(e.heldKeepalive)
		return err
	}
	e.heldKeepalive = held
	// Remember endpoints only once they are applied.
	for k := range e.endpoints {
		if !wanted[k] {
			delete(e.endpoints, k)
		}
	}
	for k := range e.added {
		if !wanted[k] {
			delete(e.added, k)
		}
	}
	for _, p := range cfg.Peers {
		if p.Endpoint.IsValid() {
			e.endpoints[p.Key] = p.Endpoint
		}
	}
	if e.dev != nil {
		for _, k := range added {
			e.addSeq++
			e.added[k] = e.addSeq
			e.kickLater(self, k, e.addSeq)
		}
	}
	return nil
}

// peerChange returns the change that makes the device's peer cur (nil if
// absent) match p, and false if there is nothing to change. With
// holdKeepalive, the peer's persistent keepalive is left off.
func (e *Engine) peerChange(p Peer, cur *wgtypes.Peer, holdKeepalive bool) (wgtypes.PeerConfig, bool) {
	pc := wgtypes.PeerConfig{PublicKey: wgtypes.Key(p.Key)}
	want := canonicalPrefixes(p.AllowedIPs)
	keepalive := p.Keepalive.Truncate(time.Second)
	if holdKeepalive {
		keepalive = 0
	}
	ep := netip.AddrPortFrom(p.Endpoint.Addr().Unmap(), p.Endpoint.Port())

	if cur == nil {
		pc.ReplaceAllowedIPs = true
		pc.AllowedIPs = ipNets(want)
		if keepalive > 0 {
			pc.PersistentKeepaliveInterval = &keepalive
		}
		if p.Endpoint.IsValid() {
			pc.Endpoint = net.UDPAddrFromAddrPort(ep)
		}
		return pc, true
	}

	pc.UpdateOnly = true
	changed := false
	if !slices.Equal(want, canonicalPrefixes(peerAllowedIPs(*cur))) {
		pc.ReplaceAllowedIPs = true
		pc.AllowedIPs = ipNets(want)
		changed = true
	}
	if cur.PersistentKeepaliveInterval != keepalive {
		pc.PersistentKeepaliveInterval = &keepalive
		changed = true
	}
	// The device's endpoint roams with the peer's traffic. Set it only
	// when the configured endpoint itself changed, or when the device has
	// none at all.
	if p.Endpoint.IsValid() && (e.endpoints[p.Key] != p.Endpoint || cur.Endpoint == nil) {
		pc.Endpoint = net.UDPAddrFromAddrPort(ep)
		changed = true
	}
	return pc, changed
}

// canonicalPrefixes returns ps masked, unmapped, sorted and without
// duplicates, the form WireGuard reports them in.
func canonicalPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		a := p.Addr()
		bits := p.Bits()
		if a.Is4In6() && bits >= 96 {
			a, bits = a.Unmap(), bits-96
		}
		out = append(out, netip.PrefixFrom(a, bits).Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

func ipNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, len(ps))
	for i, p := range ps {
		out[i] = prefixToIPNet(p)
	}
	return out
}

// configureLinkLocked makes the interface's addresses and Latch's routes
// match cfg and brings it up. Addresses come before the link is up and
// routes after, since the kernel refuses routes through a down interface.
func (e *Engine) configureLinkLocked(cfg *Config) error {
	var errs []error
	have, err := e.link.Addrs()
	if err != nil {
		return fmt.Errorf("listing addresses: %w", err)
	}
	add, del := diffPrefixes(have, hostPrefixes(cfg.Addresses))
	for _, p := range del {
		if err := e.link.DelAddr(p); err != nil {
			errs = append(errs, fmt.Errorf("removing address %v: %w", p, err))
		}
	}
	for _, p := range add {
		if err := e.link.AddAddr(p); err != nil {
			errs = append(errs, fmt.Errorf("adding address %v: %w", p, err))
		}
	}
	if err := e.link.SetUp(); err != nil {
		return errors.Join(append(errs, fmt.Errorf("bringing interface up: %w", err))...)
	}
	haveRoutes, err := e.link.Routes()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("listing routes: %w", err))...)
	}
	add, del = diffPrefixes(haveRoutes, canonicalPrefixes(cfg.Routes))
	for _, p := range del {
		if err := e.link.DelRoute(p); err != nil {
			errs = append(errs, fmt.Errorf("removing route %v: %w", p, err))
		}
	}
	for _, p := range add {
		if err := e.link.AddRoute(p); err != nil {
			errs = append(errs, fmt.Errorf("adding route %v: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// hostPrefixes returns interface addresses in the form the kernel reports
// them: the host address unmapped, with its prefix length, deduplicated.
func hostPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		a, bits := p.Addr(), p.Bits()
		if a.Is4In6() && bits >= 96 {
			a, bits = a.Unmap(), bits-96
		}
		out = append(out, netip.PrefixFrom(a, bits))
	}
	return slices.Compact(out)
}

// diffPrefixes returns what to add to have to get want, and what to remove.
func diffPrefixes(have, want []netip.Prefix) (add, del []netip.Prefix) {
	for _, w := range want {
		if !slices.Contains(have, w) && !slices.Contains(add, w) {
			add = append(add, w)
		}
	}
	for _, h := range have {
		if !slices.Contains(want, h) {
			del = append(del, h)
		}
	}
	return add, del
}
