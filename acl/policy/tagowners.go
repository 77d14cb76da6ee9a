package policy

import (
	"slices"
	"strings"

	"github.com/latchnet/latch/wire"
)

// MayAssignTag reports whether the policy knows tag (it is listed in
// tagOwners) and whether user is among its owners, directly or through a
// group. An unknown tag is owned by nobody.
func (p *Policy) MayAssignTag(user string, tag wire.Tag) (known, owner bool) {
	owners, known := p.TagOwners[tag]
	if !known || user == "" {
		return known, false
	}
	for _, o := range owners {
		if strings.HasPrefix(o, "group:") {
			if slices.Contains(p.Groups[o], user) {
				return true, true
			}
		} else if o == user {
			return true, true
		}
	}
	return true, false
}
