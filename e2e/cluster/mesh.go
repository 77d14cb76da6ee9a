package cluster

import (
	"time"

	"github.com/latchnet/latch/e2e/netns"
)

// Mesh is a coordinator and agents enrolled with one reusable key.
type Mesh struct {
	Coord  *Coordinator
	Agents []*Agent
}

// StartMesh starts a coordinator on coordHost, saves MeshPolicy, starts an
// agent on each of hosts, enrolls them all (a reusable key created with
// the bootstrap token that tags every node MeshTag, `latch up --hostname
// <host name>`), and waits until every agent is connected and sees all the
// others.
func StartMesh(t netns.TB, bins Binaries, coordHost *netns.Host, hosts ...*netns.Host) *Mesh {
	t.Helper()
	m := &Mesh{Coord: StartCoordinator(t, bins, coordHost)}
	m.Coord.SetPolicy(t, MeshPolicy)
	key := m.Coord.CreateKey(t, "--reusable", "--tags", MeshTag, "--description", "e2e mesh")
	for _, h := range hosts {
		a := StartAgent(t, bins, h, m.Coord)
		a.Up(t, key.Key)
		m.Agents = append(m.Agents, a)
	}
	for _, a := range m.Agents {
		a.WaitConnected(t, len(m.Agents)-1, 30*time.Second)
	}
	return m
}
