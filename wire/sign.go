package wire

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Netmap signatures.
//
// The coordinator signs, with its Ed25519 netmap key, the digest of the
// full netmap a node holds after each stream message (the full map itself,
// or the map after applying a delta), bound to the receiving node's ID and
// the map's version. The agent applies a delta in memory, recomputes the
// digest with this package, and verifies the signature with the key it
// pinned at enrollment before it uses or caches the map. Both sides must
// compute digests only with the functions here: they define the canonical
// encoding.
//
// The digest is SHA-256 over a domain string, the length-prefixed
// canonical JSON of a header (node, version, self, rules, peer count) and
// the SHA-256 of each peer's canonical JSON in peer ID order. Hashing each
// peer on its own lets the coordinator keep peer digests and re-sign a
// changed map without re-encoding every peer. Canonical JSON is
// encoding/json of a normalised copy: nil and empty slices encode alike
// and times are in UTC, so a map survives a JSON round trip unchanged.

// netmapDomain separates netmap digests from any other use of the key.
const netmapDomain = "latch netmap signature v1\x00"

// ErrBadSignature is returned when a netmap signature is missing or does
// not verify.
var ErrBadSignature = errors.New("netmap signature does not verify")

// PeerDigest returns the canonical digest of one peer entry.
func PeerDigest(p *Peer) [32]byte {
	c := Peer{Node: canonicalNode(p.Node), Rules: p.Rules}
	return sha256.Sum256(mustJSON(c))
}

// sigHeader is the part of a netmap hashed as one JSON document.
type sigHeader struct {
	Node    NodeID       `json:"node"`
	Version uint64       `json:"version"`
	Self    Node         `json:"self"`
	Rules   []FilterRule `json:"rules"`
	Peers   int          `json:"peers"`
}

// NetmapDigest returns the digest of the netmap of node at version with
// self, rules and peers whose PeerDigests, in ascending peer ID order, are
// peerDigests. Netmap.Digest is the usual entry; this form lets a holder
// of cached peer digests skip re-encoding peers.
func NetmapDigest(node NodeID, version uint64, self *Node, rules []FilterRule, peerDigests [][32]byte) [32]byte {
	cr := make([]FilterRule, len(rules))
	for i, r := range rules {
		cr[i] = canonicalRule(r)
	}
	hdr := mustJSON(sigHeader{Node: node, Version: version, Self: canonicalNode(*self), Rules: cr, Peers: len(peerDigests)})
	h := sha256.New()
	h.Write([]byte(netmapDomain))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(hdr)))
	h.Write(n[:])
	h.Write(hdr)
	for _, d := range peerDigests {
		h.Write(d[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Digest returns the canonical digest of nm as the netmap of node. The
// order of nm.Peers does not matter; nm is not modified.
func (nm *Netmap) Digest(node NodeID) [32]byte {
	peers := slices.Clone(nm.Peers)
	SortPeers(peers)
	ds := make([][32]byte, len(peers))
	for i := range peers {
		ds[i] = PeerDigest(&peers[i])
	}
	return NetmapDigest(node, nm.Version, &nm.Self, nm.Rules, ds)
}

// SignDigest signs a netmap digest.
func SignDigest(key ed25519.PrivateKey, digest [32]byte) []byte {
	return ed25519.Sign(key, digest[:])
}

// VerifyNetmap checks that sig is key's signature of nm as the netmap of
// node. It fails with ErrBadSignature for a missing, malformed or wrong
// signature (including one made for another node or version), and when
// nm is not for node.
func VerifyNetmap(key ed25519.PublicKey, node NodeID, nm *Netmap, sig []byte) error {
	if len(key) != ed25519.PublicKeySize {
		return errors.New("verifying netmap: no valid netmap key pinned")
	}
	if len(sig) == 0 {
		return fmt.Errorf("%w: unsigned", ErrBadSignature)
	}
	if nm.Self.ID != node {
		return fmt.Errorf("%w: netmap is for node %q, not %q", ErrBadSignature, nm.Self.ID, node)
	}
	d := nm.Digest(node)
	if !ed25519.Verify(key, d[:], sig) {
		return ErrBadSignature
	}
	return nil
}

func canonicalNode(n Node) Node {
	if n.Addresses == nil {
		n.Addresses = []netip.Prefix{}
	}
	n.Created = n.Created.UTC()
	return n
}

func canonicalRule(r FilterRule) FilterRule {
	if r.Protocols == nil {
		r.Protocols = []Proto{}
	}
	if r.Ports == nil {
		r.Ports = []PortRange{}
	}
	if !r.Expires.IsZero() {
		r.Expires = r.Expires.UTC()
	}
	return r
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Every type hashed here marshals without error.
		panic("wire: encoding netmap for its digest: " + err.Error())
	}
	return b
}
