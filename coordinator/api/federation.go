package api

// routeFederation registers the workload identity trust rule routes.
func (s *Server) routeFederation() {}
