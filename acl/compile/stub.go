package compile

import (
	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// Placeholder API so dependants compile while the compiler is written;
// replaced by the real implementation before anything lands.

// Compiler maintains every node's View for one policy. Not safe for
// concurrent use; the caller serializes.
type Compiler struct{}

// New returns a compiler for p (nil p admits nothing) with no nodes.
func New(p *policy.Policy) *Compiler { return &Compiler{} }

// SetPolicy replaces the policy and returns the nodes whose view changed.
func (c *Compiler) SetPolicy(p *policy.Policy) []wire.NodeID { return nil }

// Upsert adds or replaces a node and returns the nodes whose view changed
// (including n itself when added).
func (c *Compiler) Upsert(n Node) []wire.NodeID { return nil }

// Remove deletes a node and returns the nodes whose view changed.
func (c *Compiler) Remove(id wire.NodeID) []wire.NodeID { return nil }

// SetGrants replaces the active grants and returns the nodes whose view
// changed.
func (c *Compiler) SetGrants(gs []Grant) []wire.NodeID { return nil }

// View returns a node's view, or false if the node is unknown.
func (c *Compiler) View(id wire.NodeID) (View, bool) { return View{}, false }

// SeenBy returns the nodes that have id in their view (whose netmaps must
// change when id's details, such as its endpoints, change), sorted.
func (c *Compiler) SeenBy(id wire.NodeID) []wire.NodeID { return nil }

// Pairs returns every permission on the current inventory, sorted.
func (c *Compiler) Pairs() []Pair { return nil }
