package state_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/agent/internal/fakecoord"
	"github.com/latchnet/latch/agent/state"
	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// testNetmapKey stands in for the coordinator's netmap signing key.
var _, testNetmapKey, _ = ed25519.GenerateKey(rand.Reader)

func newState(t *testing.T) *state.State {
	t.Helper()
	ca := fakecoord.NewCA("ca")
	wg, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, ck, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("spiffe://td/node/n1")
	return &state.State{
		Identity: state.Identity{
			NodeID:       "n1",
			Name:         "web-1",
			Addresses:    []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32")},
			Coordinator:  "https://127.0.0.1:8443",
			TrustDomain:  "td",
			WireGuardKey: wire.NodePublic(wg.PublicKey()),
			NetmapKey:    testNetmapKey.Public().(ed25519.PublicKey),
			Enrolled:     time.Now().UTC().Truncate(time.Second),
		},
		WireGuardKey: wg,
		CertKey:      ck,
		Cert:         ca.NodeCert(pub, "n1", u, time.Hour),
		CA:           ca.Cert,
	}
}

func TestSavedStateLoadsBackAndIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	d, err := state.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Load(); !errors.Is(err, state.ErrNoIdentity) {
		t.Fatalf("Load of a fresh dir = %v, want ErrNoIdentity", err)
	}
	st := newState(t)
	if err := d.SaveEnrollment(st); err != nil {
		t.Fatal(err)
	}
	nm3 := &wire.Netmap{Version: 3, Self: wire.Node{ID: "n1", Key: st.Identity.WireGuardKey}}
	if err := d.SaveNetmap(nm3, wire.SignDigest(testNetmapKey, nm3.Digest("n1"))); err != nil {
		t.Fatal(err)
	}
	if err := d.SavePrefs(state.Prefs{WantRunning: false}); err != nil {
		t.Fatal(err)
	}

	got, err := d.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got.WireGuardKey != st.WireGuardKey || !got.CertKey.Equal(st.CertKey) || !got.Cert.Equal(st.Cert) || !got.CA.Equal(st.CA) {
		t.Error("loaded keys or certificates differ from saved ones")
	}
	if got.Identity.NodeID != "n1" || got.Identity.Name != "web-1" || !got.Identity.Enrolled.Equal(st.Identity.Enrolled) {
		t.Errorf("identity = %+v", got.Identity)
	}
	if !got.Identity.NetmapKey.Equal(st.Identity.NetmapKey) {
		t.Error("pinned netmap key not loaded back")
	}
	nm, err := d.LoadNetmap("n1", got.Identity.NetmapKey)
	if err != nil || nm == nil || nm.Version != 3 {
		t.Errorf("LoadNetmap = %v, %v", nm, err)
	}
	if nm, err := d.LoadNetmap("other", got.Identity.NetmapKey); nm != nil || !errors.Is(err, state.ErrNetmapRefused) {
		t.Errorf("LoadNetmap of another identity = %v, %v; want ErrNetmapRefused", nm, err)
	}
	if p, err := d.LoadPrefs(); err != nil || p.WantRunning {
		t.Errorf("LoadPrefs = %+v, %v", p, err)
	}

	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode = %v, want 0700", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(path)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	if len(ents) != 7 {
		t.Errorf("state dir holds %d files, want 7", len(ents))
	}
}

func TestOpenTightensDirectoryMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := state.Open(path); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("mode = %v, want 0700", fi.Mode().Perm())
	}
}

func TestCorruptStateIsReportedClearly(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		corrupt func(t *testing.T, path string, other *state.State)
	}{
		{"identity not JSON", state.FileIdentity, write("{not json")},
		{"identity without node id", state.FileIdentity, write(`{"coordinator":"https://x","trust_domain":"td"}`)},
		{"identity without a netmap key", state.FileIdentity, func(t *testing.T, path string, _ *state.State) {
			b, _ := os.ReadFile(path)
			var id map[string]any
			json.Unmarshal(b, &id)
			delete(id, "netmap_key")
			b, _ = json.Marshal(id)
			write(string(b))(t, path, nil)
		}},
		{"WireGuard key not base64", state.FileWGKey, write("!!!")},
		{"WireGuard key of another node", state.FileWGKey, func(t *testing.T, path string, other *state.State) {
			write(other.WireGuardKey.String())(t, path, other)
		}},
		{"certificate key missing", state.FileCertKey, func(t *testing.T, path string, _ *state.State) { os.Remove(path) }},
		{"certificate for another key", state.FileCert, func(t *testing.T, path string, other *state.State) {
			d, _ := state.Open(filepath.Dir(path))
			d.SaveCert(other.Cert)
		}},
		{"CA not PEM", state.FileCA, write("garbage")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir()
			d, _ := state.Open(path)
			st := newState(t)
			if err := d.SaveEnrollment(st); err != nil {
				t.Fatal(err)
			}
			tt.corrupt(t, filepath.Join(path, tt.file), newState(t))
			_, err := d.Load()
			if err == nil {
				t.Fatal("Load succeeded on a corrupt state dir")
			}
			msg := err.Error()
			if !strings.Contains(msg, "is corrupt") || !strings.Contains(msg, tt.file) || strings.Contains(msg, "\n") {
				t.Errorf("error %q does not name the corrupt file on one line", msg)
			}
			if strings.Contains(msg, st.WireGuardKey.String()) {
				t.Errorf("error leaks the private key")
			}
		})
	}
}

func write(s string) func(*testing.T, string, *state.State) {
	return func(t *testing.T, path string, _ *state.State) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCorruptNetmapCacheIsAnError(t *testing.T) {
	d, _ := state.Open(t.TempDir())
	os.WriteFile(filepath.Join(d.Path(), state.FileNetmap), []byte("{"), 0o600)
	if _, err := d.LoadNetmap("n1", testNetmapKey.Public().(ed25519.PublicKey)); !errors.Is(err, state.ErrNetmapRefused) || !strings.Contains(err.Error(), state.FileNetmap) {
		t.Errorf("LoadNetmap = %v, want an error naming the file", err)
	}
}
