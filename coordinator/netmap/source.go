package netmap

import (
	"context"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// StoreSource reads snapshots from the coordinator's store.
type StoreSource struct {
	Store store.Store
}

// Snapshot implements Source.
func (s StoreSource) Snapshot(ctx context.Context) (*Snapshot, error) {
	snap, err := s.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	nodes := make([]wire.Node, len(snap.Nodes))
	for i, n := range snap.Nodes {
		nodes[i] = n.Wire()
	}
	return NewSnapshot(snap.Version, nodes), nil
}
