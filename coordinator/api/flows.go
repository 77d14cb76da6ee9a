package api

// routeFlows registers the flow log routes.
func (s *Server) routeFlows() {}
