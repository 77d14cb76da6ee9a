package agent

// Posture: what the agent reports about its host. The coordinator stores
// it and policy rules may require it ("srcPosture"), so the agent sends it
// at enrollment and again whenever it changes: a session loop collects it
// every Config.PostureInterval (and on every new stream) and sends an
// UpdateRequest only when it differs from what the coordinator last
// acknowledged.
//
// What cannot be read stays unknown (empty, or nil for the booleans):
// a posture condition on an unknown attribute never holds, so an agent
// that cannot tell never passes for a hardened host.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/latchnet/latch/internal/version"
	"github.com/latchnet/latch/wire"
)

// DefaultPostureInterval is how often the agent re-reads its posture.
const DefaultPostureInterval = 30 * time.Second

// postureTimeout bounds one collection (the nft call above all).
const postureTimeout = 5 * time.Second

// PostureCollector reads the host's posture.
type PostureCollector interface {
	// Collect returns the posture now. It never fails: an attribute it
	// cannot read is left unknown (empty string, nil boolean). It returns
	// by the time ctx ends.
	Collect(ctx context.Context) wire.Posture
}

// PostureHost is the operating system as posture collection reads it. The
// system implementation is SystemPostureHost; tests use an in-memory fake.
type PostureHost interface {
	// ReadFile returns a file's content (os-release, /proc, /sys).
	ReadFile(path string) ([]byte, error)
	// ReadDir returns the names of a directory's entries.
	ReadDir(path string) ([]string, error)
	// EvalSymlinks returns path with every symbolic link resolved.
	EvalSymlinks(path string) (string, error)
	// Hostname returns the host name.
	Hostname() (string, error)
	// NftRuleset returns `nft -j list ruleset` for the network namespace
	// the agent runs in. It returns an error wrapping ErrNoNft when the
	// nft program is not installed.
	NftRuleset(ctx context.Context) ([]byte, error)
}

// ErrNoNft means the nft program is not installed, so whether a host
// firewall is loaded cannot be told.
var ErrNoNft = errors.New("nft is not installed")

// SystemPostureHost reads the real system.
type SystemPostureHost struct{}

// ReadFile implements PostureHost.
func (SystemPostureHost) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

// ReadDir implements PostureHost.
func (SystemPostureHost) ReadDir(path string) ([]string, error) {
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

// EvalSymlinks implements PostureHost.
func (SystemPostureHost) EvalSymlinks(path string) (string, error) {
	return filepath.EvalSymlinks(path)
}

// Hostname implements PostureHost.
func (SystemPostureHost) Hostname() (string, error) { return os.Hostname() }

// NftRuleset implements PostureHost by running nft, which inherits the
// agent's network namespace.
func (SystemPostureHost) NftRuleset(ctx context.Context) ([]byte, error) {
	path, err := exec.LookPath("nft")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoNft, err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "-j", "list", "ruleset")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nft -j list ruleset: %v: %s", err, firstLineOf(stderr.String()))
	}
	return out, nil
}

// HostPosture collects posture from a PostureHost.
type HostPosture struct {
	Host PostureHost
	// AgentVersion is reported as agent_version; empty means
	// internal/version.Version.
	AgentVersion string
	Logger       *slog.Logger
}

// NewSystemPosture returns the collector of the real host.
func NewSystemPosture(log *slog.Logger) *HostPosture {
	return &HostPosture{Host: SystemPostureHost{}, Logger: log}
}

// Collect implements PostureCollector.
func (c *HostPosture) Collect(ctx context.Context) wire.Posture {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := wire.Posture{OS: runtime.GOOS, AgentVersion: c.AgentVersion}
	if p.AgentVersion == "" {
		p.AgentVersion = version.Version
	}
	p.OSVersion = osVersion(c.Host)
	if b, err := c.Host.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		p.Kernel = strings.TrimSpace(string(b))
	}
	if h, err := c.Host.Hostname(); err == nil {
		p.Hostname = h
	}
	ctx, cancel := context.WithTimeout(ctx, postureTimeout)
	defer cancel()
	if b, err := c.Host.NftRuleset(ctx); err != nil {
		log.Debug("posture: cannot tell whether a host firewall is loaded", logErr, err)
	} else if on, err := firewallLoaded(b); err != nil {
		log.Debug("posture: reading the nftables ruleset", logErr, err)
	} else {
		p.Firewall = &on
	}
	if enc, err := rootEncrypted(c.Host); err != nil {
		log.Debug("posture: cannot tell whether the root file system is encrypted", logErr, err)
	} else {
		p.DiskEncryption = &enc
	}
	return p
}

// osVersion reads VERSION_ID from os-release(5).
func osVersion(h PostureHost) string {
	for _, path := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		b, err := h.ReadFile(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "VERSION_ID=")
			if ok {
				return strings.Trim(v, `"'`)
			}
		}
		return ""
	}
	return ""
}

// latchTablePrefix names the nftables tables Latch itself may create;
// they are not the host's firewall.
const latchTablePrefix = "latch"

// firewallLoaded reports whether an `nft -j list ruleset` output holds a
// host firewall: a base chain of type filter (hooked into the packet
// path, as iptables-nft's INPUT, FORWARD and OUTPUT are) that has a rule
// or drops by default, in a table that is not Latch's own. Empty tables
// and chains, NAT chains and accept-all chains are no firewall.
func firewallLoaded(out []byte) (bool, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return false, fmt.Errorf("decoding nft output: %v", err)
	}
	if doc.Nftables == nil {
		return false, errors.New("decoding nft output: no \"nftables\" array")
	}
	type chainKey struct{ family, table, name string }
	var chains []struct {
		Family, Table, Name, Type, Hook, Policy string
	}
	var rules []chainKey
	for _, obj := range doc.Nftables {
		if raw, ok := obj["chain"]; ok {
			var c struct {
				Family, Table, Name, Type, Hook, Policy string
			}
			if err := json.Unmarshal(raw, &c); err != nil {
				return false, fmt.Errorf("decoding nft chain: %v", err)
			}
			chains = append(chains, c)
		}
		if raw, ok := obj["rule"]; ok {
			var r struct{ Family, Table, Chain string }
			if err := json.Unmarshal(raw, &r); err != nil {
				return false, fmt.Errorf("decoding nft rule: %v", err)
			}
			rules = append(rules, chainKey{r.Family, r.Table, r.Chain})
		}
	}
	base := map[chainKey]bool{}
	for _, c := range chains {
		if c.Hook == "" || c.Type != "filter" || strings.HasPrefix(c.Table, latchTablePrefix) {
			continue
		}
		if c.Policy == "drop" {
			return true, nil
		}
		base[chainKey{c.Family, c.Table, c.Name}] = true
	}
	for _, r := range rules {
		if base[r] {
			return true, nil
		}
	}
	return false, nil
}

// maxDMDepth bounds the walk down stacked device-mapper devices (LVM on
// LUKS on a partition is three).
const maxDMDepth = 8

// rootEncrypted reports whether the root file system lives on a dm-crypt
// device, directly or below other device-mapper layers (LVM on LUKS). It
// fails when the root is not on a block device it can find (overlay,
// tmpfs, network file systems): unknown, not false.
func rootEncrypted(h PostureHost) (bool, error) {
	dev, err := rootBlockDevice(h)
	if err != nil {
		return false, err
	}
	return dmEncrypted(h, dev, 0)
}

// rootBlockDevice returns the sysfs directory of the block device holding
// "/", from /proc/self/mountinfo: /sys/dev/block/MAJ:MIN, or for file
// systems with anonymous device numbers (btrfs) the device named as the
// mount source.
func rootBlockDevice(h PostureHost) (string, error) {
	b, err := h.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	var devNum, source string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		f := strings.Fields(sc.Text())
		if len(f) < 7 || f[4] != "/" {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		// The last mount on "/" is the one in effect.
		devNum, source = f[2], ""
		if sep >= 0 && sep+2 < len(f) {
			source = f[sep+2]
		}
	}
	switch {
	case devNum == "":
		return "", errors.New("no root mount in /proc/self/mountinfo")
	case !strings.HasPrefix(devNum, "0:"):
		dir := "/sys/dev/block/" + devNum
		if _, err := h.ReadDir(dir); err != nil {
			return "", err
		}
		return dir, nil
	case strings.HasPrefix(source, "/dev/"):
		real, err := h.EvalSymlinks(source)
		if err != nil {
			return "", err
		}
		dir := "/sys/class/block/" + filepath.Base(real)
		if _, err := h.ReadDir(dir); err != nil {
			return "", err
		}
		return dir, nil
	}
	return "", fmt.Errorf("the root file system (%s) is not on a block device", source)
}

// dmEncrypted reports whether the block device at sysfs directory dir is a
// dm-crypt device or a device-mapper device stacked on one.
func dmEncrypted(h PostureHost, dir string, depth int) (bool, error) {
	if depth > maxDMDepth {
		return false, errors.New("device-mapper stack too deep")
	}
	uuid, err := h.ReadFile(dir + "/dm/uuid")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil // a plain disk or partition
	case err != nil:
		return false, err
	case strings.HasPrefix(strings.TrimSpace(string(uuid)), "CRYPT-"):
		return true, nil
	}
	slaves, err := h.ReadDir(dir + "/slaves")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	for _, s := range slaves {
		enc, err := dmEncrypted(h, "/sys/class/block/"+s, depth+1)
		if err != nil {
			return false, err
		}
		if enc {
			return true, nil
		}
	}
	return false, nil
}

// postureEqual reports whether a and b say the same.
func postureEqual(a, b *wire.Posture) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.OS == b.OS && a.OSVersion == b.OSVersion && a.Kernel == b.Kernel &&
		a.AgentVersion == b.AgentVersion && a.Hostname == b.Hostname &&
		boolPtrEqual(a.Firewall, b.Firewall) && boolPtrEqual(a.DiskEncryption, b.DiskEncryption)
}

func boolPtrEqual(a, b *bool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func firstLineOf(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// collectPosture reads the posture and records it for Status.
func (a *Agent) collectPosture(ctx context.Context) wire.Posture {
	p := a.cfg.Posture.Collect(ctx)
	a.mu.Lock()
	if !postureEqual(a.posture, &p) {
		a.posture = &p
		a.changedLocked()
	}
	a.mu.Unlock()
	return p
}

// setPostureAcked records p as what the coordinator holds.
func (a *Agent) setPostureAcked(p *wire.Posture) {
	a.mu.Lock()
	a.postureAcked = p
	a.mu.Unlock()
}

func (s *session) kickPosture() {
	select {
	case s.postureKick <- struct{}{}:
	default:
	}
}

// postureLoop re-reads the posture on every new stream and every
// Config.PostureInterval, and reports it when it differs from what the
// coordinator last acknowledged. A failed report is retried at the next
// tick.
func (s *session) postureLoop() {
	defer s.wg.Done()
	a := s.a
	var tick <-chan time.Time
	if a.cfg.PostureInterval > 0 {
		t := time.NewTicker(a.cfg.PostureInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.postureKick:
		case <-tick:
		}
		a.mu.Lock()
		connected, refused, acked := a.connected, a.refused, a.postureAcked
		a.mu.Unlock()
		if !connected || refused {
			continue
		}
		p := a.collectPosture(s.ctx)
		if postureEqual(acked, &p) {
			continue
		}
		if err := s.client.Update(s.ctx, wire.UpdateRequest{Posture: &p}); err != nil {
			if s.ctx.Err() == nil {
				a.log.Warn("reporting posture", logErr, err)
			}
			continue
		}
		a.setPostureAcked(&p)
		a.log.Info("reported posture", postureLogAttrs(&p)...)
	}
}

// postureLogAttrs renders p for a log line.
func postureLogAttrs(p *wire.Posture) []any {
	b := func(v *bool) string {
		if v == nil {
			return "unknown"
		}
		return fmt.Sprint(*v)
	}
	return []any{"os", p.OS, "os_version", p.OSVersion, "kernel", p.Kernel, "agent_version", p.AgentVersion,
		"firewall", b(p.Firewall), "disk_encryption", b(p.DiskEncryption)}
}
