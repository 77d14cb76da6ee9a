package main

// The adapter between the agent's Engine interface and the overlay
// package's wireguard-go engine. It is the only place latchd touches the
// data plane's API, so keep it small.

import (
	"net/netip"

	"github.com/latchnet/latch/agent"
	"github.com/latchnet/latch/overlay"
)

// newEngine creates the in-process WireGuard device.
func newEngine(opts agent.EngineOptions) (agent.Engine, error) {
	e, err := overlay.New(overlay.Options{Interface: opts.Interface, MTU: opts.MTU, Logger: opts.Logger, Flows: opts.Flows})
	if err != nil {
		return nil, err
	}
	return overlayEngine{e}, nil
}

// overlayMTU is the overlay MTU for an underlay path towards dst: the
// path's MTU minus WireGuard's overhead for dst's address family.
func overlayMTU(dst netip.Addr) (int, error) {
	u, err := overlay.UnderlayMTU(dst)
	if err != nil {
		return 0, err
	}
	return overlay.OverlayMTU(u, dst.Is6()), nil
}

type overlayEngine struct{ e *overlay.Engine }

func (o overlayEngine) Reconfig(cfg overlay.Config) error { return o.e.Reconfig(cfg) }

func (o overlayEngine) Close() error { return o.e.Close() }

func (o overlayEngine) Status() (agent.EngineStatus, error) {
	st, err := o.e.Status()
	if err != nil {
		return agent.EngineStatus{}, err
	}
	out := agent.EngineStatus{ListenPort: st.ListenPort}
	for _, p := range st.Peers {
		out.Peers = append(out.Peers, agent.EnginePeer{
			Key:           p.Key,
			Endpoint:      p.Endpoint,
			LastHandshake: p.LastHandshake,
			RxBytes:       p.RxBytes,
			TxBytes:       p.TxBytes,
		})
	}
	return out, nil
}
