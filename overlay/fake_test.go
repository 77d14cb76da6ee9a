package overlay

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// fakeWG is an in-memory WireGuard device with wgctrl's configuration
// semantics. A peer's session counts how often the peer was created: a
// Reconfig that tears a peer down and sets it up again shows as a new
// session.
type fakeWG struct {
	mu       sync.Mutex
	dev      wgtypes.Device
	sessions map[wgtypes.Key]int
	configs  []wgtypes.Config // every ConfigureDevice call
	failNext error
}

func newFakeWG() *fakeWG { return &fakeWG{sessions: map[wgtypes.Key]int{}} }

func (f *fakeWG) Device() (*wgtypes.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.dev
	d.Peers = slices.Clone(f.dev.Peers)
	for i := range d.Peers {
		d.Peers[i].AllowedIPs = slices.Clone(d.Peers[i].AllowedIPs)
	}
	return &d, nil
}

func (f *fakeWG) ConfigureDevice(cfg wgtypes.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNext; err != nil {
		f.failNext = nil
		return err
	}
	f.configs = append(f.configs, cfg)
	if cfg.PrivateKey != nil {
		f.dev.PrivateKey = *cfg.PrivateKey
		f.dev.PublicKey = cfg.PrivateKey.PublicKey()
	}
	if cfg.ListenPort != nil {
		f.dev.ListenPort = *cfg.ListenPort
	}
	if cfg.ReplacePeers {
		f.dev.Peers = nil
	}
	for _, pc := range cfg.Peers {
		i := slices.IndexFunc(f.dev.Peers, func(p wgtypes.Peer) bool { return p.PublicKey == pc.PublicKey })
		switch {
		case pc.Remove:
			if i >= 0 {
				f.dev.Peers = slices.Delete(f.dev.Peers, i, i+1)
			}
			continue
		case i < 0 && pc.UpdateOnly:
			continue
		case i < 0:
			f.dev.Peers = append(f.dev.Peers, wgtypes.Peer{PublicKey: pc.PublicKey})
			i = len(f.dev.Peers) - 1
			f.sessions[pc.PublicKey]++
		}
		p := &f.dev.Peers[i]
		if pc.Endpoint != nil {
			p.Endpoint = pc.Endpoint
		}
		if pc.PersistentKeepaliveInterval != nil {
			p.PersistentKeepaliveInterval = *pc.PersistentKeepaliveInterval
		}
		if pc.ReplaceAllowedIPs {
			p.AllowedIPs = nil
		}
		p.AllowedIPs = append(p.AllowedIPs, pc.AllowedIPs...)
	}
	return nil
}

func (f *fakeWG) Close() error { return nil }

// roam moves a peer's endpoint as the real device does when the peer's
// packets arrive from a new address.
func (f *fakeWG) roam(k wgtypes.Key, ap netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.dev.Peers {
		if f.dev.Peers[i].PublicKey == k {
			f.dev.Peers[i].Endpoint = net.UDPAddrFromAddrPort(ap)
		}
	}
}

func (f *fakeWG) calls() []wgtypes.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.configs)
}

// fakeLink is an in-memory interface.
type fakeLink struct {
	mu          sync.Mutex
	addrs       []netip.Prefix
	routes      []netip.Prefix
	up          bool
	ops         []string // every change, e.g. "add-addr 100.64.0.1/32"
	failRouteAt netip.Prefix
}

func (l *fakeLink) Addrs() ([]netip.Prefix, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.addrs), nil
}

func (l *fakeLink) AddAddr(p netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if slices.Contains(l.addrs, p) {
		return os.ErrExist
	}
	l.addrs = append(l.addrs, p)
	l.ops = append(l.ops, "add-addr "+p.String())
	return nil
}

func (l *fakeLink) DelAddr(p netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addrs = slices.DeleteFunc(l.addrs, func(x netip.Prefix) bool { return x == p })
	l.ops = append(l.ops, "del-addr "+p.String())
	return nil
}

func (l *fakeLink) Routes() ([]netip.Prefix, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.routes), nil
}

func (l *fakeLink) AddRoute(p netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.up {
		return errors.New("network is down")
	}
	if p == l.failRouteAt {
		return errors.New("file exists")
	}
	if slices.Contains(l.routes, p) {
		return os.ErrExist
	}
	l.routes = append(l.routes, p)
	l.ops = append(l.ops, "add-route "+p.String())
	return nil
}

func (l *fakeLink) DelRoute(p netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.routes = slices.DeleteFunc(l.routes, func(x netip.Prefix) bool { return x == p })
	l.ops = append(l.ops, "del-route "+p.String())
	return nil
}

func (l *fakeLink) SetUp() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.up {
		l.up = true
		l.ops = append(l.ops, "up")
	}
	return nil
}

func (l *fakeLink) takeOps() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ops := l.ops
	l.ops = nil
	return ops
}

// fakeTUN is an in-memory tun.Device. Read hands out the packets queued in
// toRead as one batch; Write records what it is given.
type fakeTUN struct {
	mu      sync.Mutex
	toRead  [][]byte
	written [][][]byte // per Write call, the packets (from offset) as given
	gotBufs [][][]byte // per Write call, the bufs slice itself
	events  chan tun.Event
}

func newFakeTUN() *fakeTUN { return &fakeTUN{events: make(chan tun.Event)} }

func (t *fakeTUN) File() *os.File { return nil }

func (t *fakeTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for ; n < len(t.toRead) && n < len(bufs); n++ {
		sizes[n] = copy(bufs[n][offset:], t.toRead[n])
	}
	t.toRead = t.toRead[n:]
	return n, nil
}

func (t *fakeTUN) Write(bufs [][]byte, offset int) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var pkts [][]byte
	for _, b := range bufs {
		pkts = append(pkts, slices.Clone(b[offset:]))
	}
	t.written = append(t.written, pkts)
	t.gotBufs = append(t.gotBufs, bufs)
	return len(bufs), nil
}

func (t *fakeTUN) MTU() (int, error)        { return 1340, nil }
func (t *fakeTUN) Name() (string, error)    { return "fake0", nil }
func (t *fakeTUN) Events() <-chan tun.Event { return t.events }
func (t *fakeTUN) Close() error             { return nil }
func (t *fakeTUN) BatchSize() int           { return 128 }
