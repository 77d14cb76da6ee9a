// Package state persists a Latch agent's identity, keys, certificates and
// last network map in its state directory.
//
// Every file is written atomically (temporary file, fsync, rename, fsync
// of the directory) with mode 0600 inside a 0700 directory, so a crash at
// any moment leaves either the old or the new content. identity.json is
// written last when a node enrolls: it is the commit record, and Load
// checks that the key and certificate files agree with it, so a state
// directory left half-written by a crash is reported as corrupt rather
// than used.
//
// Private keys never leave this package other than to the caller, and no
// error message here contains key material.
package state

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// File names inside the state directory.
const (
	FileIdentity = "identity.json"
	FileWGKey    = "wireguard.key"
	FileCertKey  = "node.key"
	FileCert     = "node.crt"
	FileCA       = "ca.crt"
	FileNetmap   = "netmap.json"
	FilePrefs    = "prefs.json"
)

// ErrNoIdentity is returned by Load when the node has never enrolled.
var ErrNoIdentity = errors.New("not enrolled")

// Identity is who this node is on its network. It holds no secret.
type Identity struct {
	NodeID    wire.NodeID    `json:"node_id"`
	Name      string         `json:"name"`
	Addresses []netip.Prefix `json:"addresses"`
	// Coordinator is the base URL the node enrolled with.
	Coordinator string `json:"coordinator"`
	TrustDomain string `json:"trust_domain"`
	Hostname    string `json:"hostname,omitempty"`
	// WireGuardKey is the public half of the stored WireGuard key; Load
	// checks the private key against it.
	WireGuardKey wire.NodePublic `json:"wireguard_key"`
	// NetmapKey is the coordinator's Ed25519 netmap signing key, pinned
	// at enrollment: every netmap, streamed or cached, must verify with
	// it. Only a new enrollment replaces it.
	NetmapKey ed25519.PublicKey `json:"netmap_key"`
	Enrolled  time.Time         `json:"enrolled"`
	// Ephemeral is set for a node the coordinator enrolled as ephemeral:
	// it leaves the network (wire.PathLeave) on `latch down` and on exit.
	Ephemeral bool `json:"ephemeral,omitempty"`
}

// State is everything a node needs to rejoin its network after a restart.
type State struct {
	Identity Identity
	// WireGuardKey is the node's WireGuard private key. Never log it.
	WireGuardKey wgtypes.Key
	// CertKey is the private key of Cert. Never log it.
	CertKey ed25519.PrivateKey
	// Cert is the node certificate; its public key is CertKey's.
	Cert *x509.Certificate
	// CA is the coordinator's CA, pinned at enrollment.
	CA *x509.Certificate
}

// Prefs are the user's wishes that survive restarts.
type Prefs struct {
	// WantRunning is false after `latch down`: a restarted agent then
	// stays down until `latch up`.
	WantRunning bool `json:"want_running"`
}

// Dir is an agent state directory.
type Dir struct {
	path string
	// mem, if set, holds every file in memory instead (OpenMemory).
	mem *memFiles
}

// Open creates the state directory if needed (mode 0700) and tightens the
// mode of an existing one to 0700.
func Open(path string) (*Dir, error) {
	if path == "" {
		return nil, errors.New("opening state dir: empty path")
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("opening state dir: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("opening state dir: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("opening state dir: %s is not a directory", path)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(path, 0o700); err != nil {
			return nil, fmt.Errorf("opening state dir: %w", err)
		}
	}
	return &Dir{path: path}, nil
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

func (d *Dir) file(name string) string { return filepath.Join(d.path, name) }

// corrupt builds the error for a state file that exists but cannot be used.
func (d *Dir) corrupt(name string, err error) error {
	return fmt.Errorf("state dir %s is corrupt: %s: %v (move the directory away to enroll this node again)", d.path, name, err)
}

// Load reads the node's identity, keys and certificates. It returns
// ErrNoIdentity if the node never enrolled, and a descriptive error if any
// file is missing, unreadable or inconsistent with the others.
func (d *Dir) Load() (*State, error) {
	b, err := d.readFile(FileIdentity)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoIdentity
	}
	if err != nil {
		return nil, fmt.Errorf("loading state: %w", err)
	}
	var st State
	if err := decodeStrict(b, &st.Identity); err != nil {
		return nil, d.corrupt(FileIdentity, err)
	}
	id := &st.Identity
	if id.NodeID == "" || id.Coordinator == "" || id.TrustDomain == "" || id.WireGuardKey.IsZero() {
		return nil, d.corrupt(FileIdentity, errors.New("missing node id, coordinator, trust domain or key"))
	}
	if len(id.NetmapKey) != ed25519.PublicKeySize {
		return nil, d.corrupt(FileIdentity, errors.New("missing or malformed netmap signing key"))
	}

	if st.WireGuardKey, err = d.loadWGKey(); err != nil {
		return nil, err
	}
	if wire.NodePublic(st.WireGuardKey.PublicKey()) != id.WireGuardKey {
		return nil, d.corrupt(FileWGKey, errors.New("key does not match the enrolled identity"))
	}
	if st.CertKey, err = d.loadCertKey(); err != nil {
		return nil, err
	}
	if st.Cert, err = d.loadCert(FileCert); err != nil {
		return nil, err
	}
	if pub, ok := st.Cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(st.CertKey.Public()) {
		return nil, d.corrupt(FileCert, errors.New("certificate is not for the stored certificate key"))
	}
	if st.CA, err = d.loadCert(FileCA); err != nil {
		return nil, err
	}
	return &st, nil
}

func (d *Dir) loadWGKey() (wgtypes.Key, error) {
	b, err := d.readFile(FileWGKey)
	if err != nil {
		return wgtypes.Key{}, d.corrupt(FileWGKey, unwrapPath(err))
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		// wgtypes errors never echo the key.
		return wgtypes.Key{}, d.corrupt(FileWGKey, errors.New("not a base64 WireGuard key"))
	}
	return k, nil
}

func (d *Dir) loadCertKey() (ed25519.PrivateKey, error) {
	b, err := d.readFile(FileCertKey)
	if err != nil {
		return nil, d.corrupt(FileCertKey, unwrapPath(err))
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, d.corrupt(FileCertKey, errors.New("no PEM PRIVATE KEY block"))
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, d.corrupt(FileCertKey, errors.New("not a PKCS#8 private key"))
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, d.corrupt(FileCertKey, errors.New("not an Ed25519 key"))
	}
	return ek, nil
}

func (d *Dir) loadCert(name string) (*x509.Certificate, error) {
	b, err := d.readFile(name)
	if err != nil {
		return nil, d.corrupt(name, unwrapPath(err))
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, d.corrupt(name, errors.New("no PEM CERTIFICATE block"))
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, d.corrupt(name, err)
	}
	return c, nil
}

// SaveEnrollment writes a complete new state, replacing any previous one.
// identity.json goes last, so a crash before it leaves the old identity
// (which Load then reports as inconsistent with the new keys, never
// silently mixes) or no identity at all. The cached netmap of a previous
// identity is removed.
func (d *Dir) SaveEnrollment(st *State) error {
	if st.Cert == nil || st.CA == nil || st.CertKey == nil || len(st.Identity.NetmapKey) != ed25519.PublicKeySize {
		return errors.New("saving enrollment: incomplete state")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(st.CertKey)
	if err != nil {
		return fmt.Errorf("saving enrollment: encoding certificate key: %w", err)
	}
	idJSON, err := json.MarshalIndent(st.Identity, "", "  ")
	if err != nil {
		return fmt.Errorf("saving enrollment: %w", err)
	}
	if err := d.remove(FileNetmap); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("saving enrollment: removing old netmap: %w", err)
	}
	if err := d.remove(FilePendingWGKey); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("saving enrollment: removing pending WireGuard key: %w", err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{FileWGKey, []byte(st.WireGuardKey.String() + "\n")},
		{FileCertKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
		{FileCert, certPEM(st.Cert)},
		{FileCA, certPEM(st.CA)},
		{FileIdentity, append(idJSON, '\n')},
	}
	for _, f := range files {
		if err := d.writeAtomic(f.name, f.data); err != nil {
			return fmt.Errorf("saving enrollment: %w", err)
		}
	}
	return nil
}

// SaveCert replaces the node certificate after a renewal. The certificate
// must be for the stored certificate key.
func (d *Dir) SaveCert(cert *x509.Certificate) error {
	if err := d.writeAtomic(FileCert, certPEM(cert)); err != nil {
		return fmt.Errorf("saving node certificate: %w", err)
	}
	return nil
}

// ErrNetmapRefused is wrapped by LoadNetmap when the cached netmap cannot
// be trusted: unreadable, not signed by the pinned key, or for another
// node. The caller must then run with no peers until the coordinator
// sends a signed map.
var ErrNetmapRefused = errors.New("cached netmap refused")

// cachedNetmap is the format of FileNetmap: the map with the coordinator's
// signature over it, so the cache is verified like a streamed map.
type cachedNetmap struct {
	Netmap    *wire.Netmap `json:"netmap"`
	Signature []byte       `json:"signature"`
}

// LoadNetmap returns the cached netmap of node id, verified with key, or
// nil if there is none. A cache that does not verify (edited, truncated,
// signed by another key or for another node) is an error wrapping
// ErrNetmapRefused and naming the reason.
func (d *Dir) LoadNetmap(id wire.NodeID, key ed25519.PublicKey) (*wire.Netmap, error) {
	b, err := d.readFile(FileNetmap)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNetmapRefused, FileNetmap, unwrapPath(err))
	}
	var c cachedNetmap
	if err := decodeStrict(b, &c); err != nil {
		return nil, fmt.Errorf("%w: %s in %s is not a cached netmap: %v", ErrNetmapRefused, FileNetmap, d.path, err)
	}
	if c.Netmap == nil {
		return nil, fmt.Errorf("%w: %s in %s holds no netmap", ErrNetmapRefused, FileNetmap, d.path)
	}
	if err := wire.VerifyNetmap(key, id, c.Netmap, c.Signature); err != nil {
		return nil, fmt.Errorf("%w: %s in %s: %v", ErrNetmapRefused, FileNetmap, d.path, err)
	}
	return c.Netmap, nil
}

// SaveNetmap caches nm, verified with signature sig, for the next start.
func (d *Dir) SaveNetmap(nm *wire.Netmap, sig []byte) error {
	b, err := json.Marshal(cachedNetmap{Netmap: nm, Signature: sig})
	if err != nil {
		return fmt.Errorf("saving netmap: %w", err)
	}
	if err := d.writeAtomic(FileNetmap, append(b, '\n')); err != nil {
		return fmt.Errorf("saving netmap: %w", err)
	}
	return nil
}

// LoadPrefs returns the saved preferences; a node without any wants to run.
func (d *Dir) LoadPrefs() (Prefs, error) {
	p := Prefs{WantRunning: true}
	b, err := d.readFile(FilePrefs)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("loading prefs: %w", err)
	}
	if err := decodeStrict(b, &p); err != nil {
		return p, d.corrupt(FilePrefs, err)
	}
	return p, nil
}

// SavePrefs stores p.
func (d *Dir) SavePrefs(p Prefs) error {
	b, _ := json.Marshal(p)
	if err := d.writeAtomic(FilePrefs, append(b, '\n')); err != nil {
		return fmt.Errorf("saving prefs: %w", err)
	}
	return nil
}

// writeAtomic replaces name with data: temporary file (0600), fsync,
// rename, fsync of the directory.
func (d *Dir) writeAtomic(name string, data []byte) (err error) {
	if d.mem != nil {
		d.writeMem(name, data)
		return nil
	}
	f, err := os.CreateTemp(d.path, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, d.file(name)); err != nil {
		return err
	}
	return syncDir(d.path)
}

func syncDir(path string) error {
	dir, err := os.Open(path)
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// unwrapPath drops the path from an *fs.PathError; callers name the file.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
