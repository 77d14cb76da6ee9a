package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/agent"
	"github.com/latchnet/latch/agent/internal/fakecoord"
	"github.com/latchnet/latch/internal/version"
	"github.com/latchnet/latch/wire"
)

// fakeHost is an in-memory agent.PostureHost.
type fakeHost struct {
	files    map[string]string
	dirs     map[string][]string
	links    map[string]string
	hostname string
	nft      string
	nftErr   error
}

func (h *fakeHost) ReadFile(path string) ([]byte, error) {
	if s, ok := h.files[path]; ok {
		return []byte(s), nil
	}
	return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
}

func (h *fakeHost) ReadDir(path string) ([]string, error) {
	if d, ok := h.dirs[path]; ok {
		return d, nil
	}
	return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
}

func (h *fakeHost) EvalSymlinks(path string) (string, error) {
	if l, ok := h.links[path]; ok {
		return l, nil
	}
	return path, nil
}

func (h *fakeHost) Hostname() (string, error) { return h.hostname, nil }

func (h *fakeHost) NftRuleset(ctx context.Context) ([]byte, error) {
	return []byte(h.nft), h.nftErr
}

// Mountinfo lines: the root on a whole disk, on a device-mapper device,
// on overlay, and on btrfs (anonymous device number).
const (
	mountRootVda     = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
	mountRootDM      = "27 1 253:1 / / rw,relatime - ext4 /dev/mapper/vg-root rw\n"
	mountRootOverlay = "1 0 0:45 / / rw,relatime - overlay overlay rw,lowerdir=/l\n"
	mountRootBtrfs   = "27 1 0:30 / / rw,relatime - btrfs /dev/mapper/cryptroot rw\n"
	// mountProc comes before the root and is not it.
	mountProc = "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
)

// nft -j rulesets.
const (
	nftEmpty     = `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]}`
	nftTableOnly = `{"nftables": [{"metainfo": {}}, {"table": {"family": "inet", "name": "t", "handle": 1}}]}`
	nftRule      = `{"nftables": [{"metainfo": {}}, {"table": {"family": "inet", "name": "t", "handle": 1}},
		{"chain": {"family": "inet", "table": "t", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
		{"rule": {"family": "inet", "table": "t", "chain": "input", "handle": 2, "expr": [{"accept": null}]}}]}`
	nftEmptyChain = `{"nftables": [{"table": {"family": "inet", "name": "t"}},
		{"chain": {"family": "inet", "table": "t", "name": "input", "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}]}`
	nftDropPolicy = `{"nftables": [{"table": {"family": "inet", "name": "t"}},
		{"chain": {"family": "inet", "table": "t", "name": "input", "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}]}`
	nftRegularChainRule = `{"nftables": [{"table": {"family": "inet", "name": "t"}},
		{"chain": {"family": "inet", "table": "t", "name": "mine"}},
		{"rule": {"family": "inet", "table": "t", "chain": "mine", "expr": []}}]}`
	nftNATOnly = `{"nftables": [{"table": {"family": "ip", "name": "nat"}},
		{"chain": {"family": "ip", "table": "nat", "name": "post", "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
		{"rule": {"family": "ip", "table": "nat", "chain": "post", "expr": [{"masquerade": null}]}}]}`
	nftLatchOwn = `{"nftables": [{"table": {"family": "inet", "name": "latch"}},
		{"chain": {"family": "inet", "table": "latch", "name": "input", "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
		{"rule": {"family": "inet", "table": "latch", "chain": "input", "expr": []}}]}`
	nftIptablesNft = `{"nftables": [{"table": {"family": "ip", "name": "filter"}},
		{"chain": {"family": "ip", "table": "filter", "name": "INPUT", "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
		{"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "expr": [{"counter": null}, {"drop": null}]}}]}`
)

// debianHost is a Debian 12 VM with its root on /dev/vda and no firewall.
func debianHost() *fakeHost {
	return &fakeHost{
		files: map[string]string{
			"/etc/os-release":            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
			"/proc/sys/kernel/osrelease": "6.1.0-18-amd64\n",
			"/proc/self/mountinfo":       mountProc + mountRootVda,
		},
		dirs:     map[string][]string{"/sys/dev/block/254:0": {"dev", "queue", "size"}},
		links:    map[string]string{},
		hostname: "web-1",
		nft:      nftEmpty,
	}
}

func ptr(b bool) *bool { return &b }

func TestHostPostureReadsEveryAttribute(t *testing.T) {
	base := wire.Posture{OS: runtime.GOOS, OSVersion: "12", Kernel: "6.1.0-18-amd64", AgentVersion: version.Version,
		Hostname: "web-1", Firewall: ptr(false), DiskEncryption: ptr(false)}
	tests := []struct {
		name string
		mod  func(h *fakeHost)
		want func(p *wire.Posture)
	}{
		{"debian vm", func(h *fakeHost) {}, func(p *wire.Posture) {}},
		{"firewall: a filter base chain with a rule", func(h *fakeHost) { h.nft = nftRule },
			func(p *wire.Posture) { p.Firewall = ptr(true) }},
		{"firewall: iptables-nft's INPUT with a rule", func(h *fakeHost) { h.nft = nftIptablesNft },
			func(p *wire.Posture) { p.Firewall = ptr(true) }},
		{"firewall: a base chain that drops by default", func(h *fakeHost) { h.nft = nftDropPolicy },
			func(p *wire.Posture) { p.Firewall = ptr(true) }},
		{"no firewall: an empty table", func(h *fakeHost) { h.nft = nftTableOnly }, func(p *wire.Posture) {}},
		{"no firewall: an empty accepting base chain", func(h *fakeHost) { h.nft = nftEmptyChain }, func(p *wire.Posture) {}},
		{"no firewall: a rule in a chain nothing hooks", func(h *fakeHost) { h.nft = nftRegularChainRule }, func(p *wire.Posture) {}},
		{"no firewall: only NAT", func(h *fakeHost) { h.nft = nftNATOnly }, func(p *wire.Posture) {}},
		{"no firewall: only Latch's own table", func(h *fakeHost) { h.nft = nftLatchOwn }, func(p *wire.Posture) {}},
		{"firewall unknown: nft missing", func(h *fakeHost) { h.nft, h.nftErr = "", fmt.Errorf("%w: not in $PATH", agent.ErrNoNft) },
			func(p *wire.Posture) { p.Firewall = nil }},
		{"firewall unknown: nft fails", func(h *fakeHost) { h.nft, h.nftErr = "", errors.New("nft: Operation not permitted") },
			func(p *wire.Posture) { p.Firewall = nil }},
		{"firewall unknown: garbage output", func(h *fakeHost) { h.nft = "table inet t {" },
			func(p *wire.Posture) { p.Firewall = nil }},
		{"disk encrypted: root on dm-crypt", func(h *fakeHost) {
			h.files["/proc/self/mountinfo"] = mountRootDM
			h.dirs["/sys/dev/block/253:1"] = []string{"dm", "slaves"}
			h.files["/sys/dev/block/253:1/dm/uuid"] = "CRYPT-LUKS2-0123456789abcdef-root\n"
		}, func(p *wire.Posture) { p.DiskEncryption = ptr(true) }},
		{"disk encrypted: LVM on LUKS", func(h *fakeHost) {
			h.files["/proc/self/mountinfo"] = mountRootDM
			h.dirs["/sys/dev/block/253:1"] = []string{"dm", "slaves"}
			h.files["/sys/dev/block/253:1/dm/uuid"] = "LVM-abcdef\n"
			h.dirs["/sys/dev/block/253:1/slaves"] = []string{"dm-0"}
			h.files["/sys/class/block/dm-0/dm/uuid"] = "CRYPT-LUKS2-0123-pv\n"
		}, func(p *wire.Posture) { p.DiskEncryption = ptr(true) }},
		{"disk not encrypted: LVM on a partition", func(h *fakeHost) {
			h.files["/proc/self/mountinfo"] = mountRootDM
			h.dirs["/sys/dev/block/253:1"] = []string{"dm", "slaves"}
			h.files["/sys/dev/block/253:1/dm/uuid"] = "LVM-abcdef\n"
			h.dirs["/sys/dev/block/253:1/slaves"] = []string{"sda2"}
		}, func(p *wire.Posture) {}},
		{"disk encrypted: btrfs on a mapper device", func(h *fakeHost) {
			h.files["/proc/self/mountinfo"] = mountRootBtrfs
			h.links["/dev/mapper/cryptroot"] = "/dev/dm-0"
			h.dirs["/sys/class/block/dm-0"] = []string{"dm"}
			h.files["/sys/class/block/dm-0/dm/uuid"] = "CRYPT-LUKS1-77-cryptroot"
		}, func(p *wire.Posture) { p.DiskEncryption = ptr(true) }},
		{"disk unknown: overlay root", func(h *fakeHost) { h.files["/proc/self/mountinfo"] = mountRootOverlay },
			func(p *wire.Posture) { p.DiskEncryption = nil }},
		{"disk unknown: no mountinfo", func(h *fakeHost) { delete(h.files, "/proc/self/mountinfo") },
			func(p *wire.Posture) { p.DiskEncryption = nil }},
		{"disk unknown: device not in sysfs", func(h *fakeHost) { delete(h.dirs, "/sys/dev/block/254:0") },
			func(p *wire.Posture) { p.DiskEncryption = nil }},
		{"os-release in /usr/lib, unquoted", func(h *fakeHost) {
			delete(h.files, "/etc/os-release")
			h.files["/usr/lib/os-release"] = "ID=alpine\nVERSION_ID=3.20.1\n"
		}, func(p *wire.Posture) { p.OSVersion = "3.20.1" }},
		{"no os-release, no kernel", func(h *fakeHost) {
			delete(h.files, "/etc/os-release")
			delete(h.files, "/proc/sys/kernel/osrelease")
		}, func(p *wire.Posture) { p.OSVersion, p.Kernel = "", "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := debianHost()
			tt.mod(h)
			want := base
			tt.want(&want)
			got := (&agent.HostPosture{Host: h}).Collect(context.Background())
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("posture (-want +got):\n%s", d)
			}
		})
	}
}

// fakePosture is a PostureCollector that returns what the test sets and
// counts its calls.
type fakePosture struct {
	mu    sync.Mutex
	p     wire.Posture
	calls int
}

func (f *fakePosture) Collect(ctx context.Context) wire.Posture {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.p
}

func (f *fakePosture) set(p wire.Posture) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.p = p
}

func (f *fakePosture) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// waitCollections waits until the collector ran n more times, so that
// every comparison the agent makes in between has happened.
func (f *fakePosture) waitCollections(t *testing.T, n int) {
	t.Helper()
	target := f.count() + n
	waitFor(t, fmt.Sprintf("%d posture collections", n), func() bool { return f.count() >= target })
}

func postureUpdates(s *fakecoord.Server) []wire.Posture {
	var out []wire.Posture
	for _, u := range s.Updates() {
		if u.Posture != nil {
			out = append(out, *u.Posture)
		}
	}
	return out
}

func TestPostureIsSentAtEnrollmentAndOnlyWhenItChanges(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	hardened := wire.Posture{OS: "linux", OSVersion: "12", AgentVersion: "0.4.0", Firewall: ptr(false)}
	fp := &fakePosture{p: hardened}
	dir := t.TempDir()
	h := start(t, dir, func(c *agent.Config) {
		c.Posture = fp
		c.PostureInterval = 5 * time.Millisecond
	})
	h.enroll(s)

	if got := s.EnrollPostures(); len(got) != 1 || got[0] == nil || !cmp.Equal(*got[0], hardened) {
		t.Fatalf("enrollment postures = %v, want [%+v]", got, hardened)
	}
	// Unchanged: many collections, no update.
	fp.waitCollections(t, 10)
	if got := postureUpdates(s); len(got) != 0 {
		t.Fatalf("posture updates with an unchanged posture: %+v", got)
	}
	if st := h.status(); st.Posture == nil || !cmp.Equal(*st.Posture, hardened) {
		t.Errorf("status posture = %+v, want %+v", st.Posture, hardened)
	}

	// A change is reported once.
	on := hardened
	on.Firewall = ptr(true)
	fp.set(on)
	waitFor(t, "the changed posture to be reported", func() bool { return len(postureUpdates(s)) > 0 })
	fp.waitCollections(t, 10)
	if got := postureUpdates(s); len(got) != 1 || !cmp.Equal(got[0], on) {
		t.Fatalf("posture updates after one change = %+v, want exactly [%+v]", got, on)
	}
	for _, u := range s.Updates() {
		if u.Posture != nil && u.Endpoints != nil {
			t.Errorf("a posture update also carried endpoints: %+v", u)
		}
	}
	if st := h.status(); st.Posture == nil || !cmp.Equal(*st.Posture, on) {
		t.Errorf("status posture = %+v, want %+v", st.Posture, on)
	}

	// A report the coordinator did not acknowledge is sent again.
	s.FailUpdates(true)
	off := hardened
	fp.set(off)
	fp.waitCollections(t, 10)
	s.FailUpdates(false)
	waitFor(t, "the posture to be reported after updates recover", func() bool { return len(postureUpdates(s)) == 2 })
	fp.waitCollections(t, 10)
	if got := postureUpdates(s); len(got) != 2 || !cmp.Equal(got[1], off) {
		t.Fatalf("posture updates = %+v, want the change reported once after recovery", got)
	}

	// A restarted agent does not know what the coordinator holds: it
	// reports once, then only changes.
	h.stop()
	fp2 := &fakePosture{p: off}
	start(t, dir, func(c *agent.Config) {
		c.Posture = fp2
		c.PostureInterval = 5 * time.Millisecond
	})
	waitFor(t, "the restarted agent to report its posture", func() bool { return len(postureUpdates(s)) == 3 })
	fp2.waitCollections(t, 10)
	if got := postureUpdates(s); len(got) != 3 {
		t.Errorf("posture updates after a restart = %d, want 3", len(got))
	}
}

func TestPostureIsReportedOnEveryNewStreamWhenChanged(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	p := wire.Posture{OS: "linux", AgentVersion: "0.4.0", Firewall: ptr(false)}
	fp := &fakePosture{p: p}
	// No timer: only a new stream triggers a collection.
	h := start(t, t.TempDir(), func(c *agent.Config) {
		c.Posture = fp
		c.PostureInterval = -1
	})
	h.enroll(s)
	p.Firewall = ptr(true)
	fp.set(p)
	before := fp.count()
	s.CloseStreams()
	waitFor(t, "the posture to be reported on the new stream", func() bool {
		return slices.ContainsFunc(postureUpdates(s), func(got wire.Posture) bool { return cmp.Equal(got, p) })
	})
	if fp.count() <= before {
		t.Error("posture reported without a new collection")
	}
}
