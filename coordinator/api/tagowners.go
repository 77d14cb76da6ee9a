package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// mayAssignTags checks that the caller may hand out tags (on an
// enrollment key, a node or a trust rule), as the policy's tagOwners say:
// every tag must be listed there, and the caller's user must own it,
// directly or through a group, unless the token has the admin scope.
// Without a saved policy only admin tokens may assign tags. On refusal it
// writes the error and returns false.
func (s *Server) mayAssignTags(w http.ResponseWriter, r *http.Request, tags []wire.Tag) bool {
	if len(tags) == 0 {
		return true
	}
	admin := hasScope(caller(r).Scopes, ScopeAdmin)
	_, p, err := s.currentPolicy(r.Context())
	switch {
	case errors.Is(err, store.ErrNotFound) && admin:
		return true
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusForbidden, "no policy saved: only an admin token may assign tags until tagOwners says who owns them")
		return false
	case err != nil:
		s.internalError(w, r, "reading current policy", err)
		return false
	}
	user := caller(r).User
	for _, t := range tags {
		known, owner := p.MayAssignTag(user, t)
		switch {
		case !known:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown tag %s: the policy's tagOwners does not list it", t))
			return false
		case !owner && !admin:
			s.log.Info("refused tag assignment", logToken, tokenID(r), "user", user, "tag", t)
			writeError(w, http.StatusForbidden, fmt.Sprintf("%s may not assign %s: not among its tagOwners", actor(r), t))
			return false
		}
	}
	return true
}
