package api

// routeIdentity registers node expiry, quarantine, posture and tag routes.
func (s *Server) routeIdentity() {}
