package agent

import (
	"context"
	"errors"
	"time"

	"github.com/latchnet/latch/agent/control"
	"github.com/latchnet/latch/agent/state"
	"github.com/latchnet/latch/wire"
)

// Ephemeral nodes (CI runners, containers) leave the network when they go:
// on `latch down` and when the agent exits (Close, which latchd calls on
// SIGTERM and SIGINT), the agent tells the coordinator (wire.PathLeave),
// which deletes the node at once and tells every peer in one netmap
// version; the agent then forgets the identity, so nothing of it is reused.
// The call is bounded by Config.LeaveTimeout: an unreachable coordinator
// cannot hold the exit up, and deletes the node itself once the stream has
// been gone for its ephemeral grace.
//
// With Config.MemoryState nothing is written to disk at all (state.Open
// is never called): identity, keys, certificates and the netmap cache live
// in memory and die with the process, and such a node always enrolls as
// ephemeral.

// DefaultLeaveTimeout bounds the leave call.
const DefaultLeaveTimeout = 3 * time.Second

// Leave reasons recorded in the coordinator's audit log.
const (
	leaveReasonDown = "down"
	leaveReasonExit = "agent exit"
)

// openState opens the state the configuration asks for.
func openState(cfg Config) (*state.Dir, error) {
	if cfg.MemoryState {
		return state.OpenMemory(), nil
	}
	return state.Open(cfg.StateDir)
}

// ephemeral reports whether the node's identity is ephemeral: as enrolled,
// as the newest netmap says, or because its state lives in memory.
func (a *Agent) ephemeral() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.st == nil {
		return false
	}
	return a.st.Identity.Ephemeral || a.cfg.MemoryState || a.netmap != nil && a.netmap.Self.Ephemeral
}

// leaveLocked removes an ephemeral node from the network: the leave call,
// then the session and the interface go and the identity is forgotten. A
// failed call is logged, not returned: the node is gone locally either
// way, and the coordinator deletes it once its stream stays away. a.opMu
// is held.
func (a *Agent) leaveLocked(reason string) {
	a.mu.Lock()
	st, s := a.st, a.sess
	a.mu.Unlock()
	if st == nil {
		return
	}
	client := (*control.Client)(nil)
	if s != nil {
		client = s.client
	}
	if client == nil {
		var err error
		client, err = control.NewClient(control.ClientConfig{
			BaseURL: st.Identity.Coordinator, CA: st.CA, Certificate: a.currentCert,
			NodeID: st.Identity.NodeID, NetmapKey: st.Identity.NetmapKey, Logger: a.log,
		})
		if err != nil {
			a.log.Warn("cannot leave the network", logErr, err)
		} else {
			defer client.Close()
		}
	}
	if client != nil {
		timeout := a.cfg.LeaveTimeout
		if timeout <= 0 {
			timeout = DefaultLeaveTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := client.Leave(ctx, wire.LeaveRequest{Reason: reason})
		cancel()
		switch {
		case err == nil:
			a.log.Info("left the network: the coordinator deleted this ephemeral node", logNode, st.Identity.NodeID, "reason", reason)
		case errors.Is(err, control.ErrRefused):
			a.log.Info("left the network: the coordinator had already deleted this node", logNode, st.Identity.NodeID)
		default:
			a.log.Warn("could not tell the coordinator this ephemeral node leaves; it deletes the node once the stream stays away",
				logNode, st.Identity.NodeID, logErr, err)
		}
	}
	a.stopSessionLocked()
	if err := a.closeEngineLocked(); err != nil {
		a.log.Warn("removing the interface", logErr, err)
	}
	if err := a.dir.Forget(); err != nil {
		a.log.Error("forgetting the ephemeral identity", logErr, err)
	}
	a.mu.Lock()
	a.st, a.tlsCert, a.netmap, a.wantRunning = nil, nil, nil, false
	a.refused, a.lastErr, a.cacheErr = false, "", ""
	a.changedLocked()
	a.mu.Unlock()
}
