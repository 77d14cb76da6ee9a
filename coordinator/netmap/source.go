package netmap

import (
	"context"
	"log/slog"
	"sync"

	"github.com/latchnet/latch/acl/compile"
	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// StoreSource reads snapshots from the coordinator's store and parses the
// current policy once per version.
type StoreSource struct {
	Store  store.Store
	Logger *slog.Logger

	mu      sync.Mutex     // guards the cache below
	version int            // policy version parsed last
	parsed  *policy.Policy // that version parsed; nil if it failed
}

// Snapshot implements Source.
func (s *StoreSource) Snapshot(ctx context.Context) (*Snapshot, error) {
	snap, err := s.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	nodes := make([]Node, len(snap.Nodes))
	for i, n := range snap.Nodes {
		nodes[i] = Node{Node: n.Wire(), Owner: n.PolicyOwner(), Posture: n.Posture.Attrs(), Quarantined: n.Quarantined, Expired: n.Expired}
	}
	grants := make([]compile.Grant, len(snap.Grants))
	for i, g := range snap.Grants {
		grants[i] = Grant(g)
	}
	return NewSnapshot(Snapshot{
		Version:       snap.Version,
		Nodes:         nodes,
		PolicyVersion: snap.Policy.Version,
		Policy:        s.parse(snap.Policy),
		Grants:        grants,
	}), nil
}

// parse returns p parsed, from the cache when it is the version parsed
// last. A stored policy was valid when saved; if it no longer parses (a
// newer coordinator is stricter) the answer is no traffic, never more.
func (s *StoreSource) parse(p store.Policy) *policy.Policy {
	if p.Version == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.Version == s.version {
		return s.parsed
	}
	parsed, err := policy.Parse([]byte(p.Source))
	if err != nil {
		log := s.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		log.Error("stored policy does not parse: no node may reach any other until a valid policy is saved",
			"policy_version", p.Version, "err", err)
		parsed = nil
	}
	s.version, s.parsed = p.Version, parsed
	return parsed
}

// Grant returns the compiler's form of an approved access request.
func Grant(r store.AccessRequest) compile.Grant {
	ports := make([]policy.PortSpec, len(r.Ports))
	for i, p := range r.Ports {
		ports[i] = policy.PortSpec{Proto: p.Proto, Ports: wire.PortRange{First: p.First, Last: p.Last}}
	}
	return compile.Grant{ID: r.ID, Src: r.Src, Service: r.To, Ports: ports, Expires: r.Expires, SrcPosture: r.SrcPosture}
}
