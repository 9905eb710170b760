package httpapi

// jobRoutes lists the routes of this feature area; they join the table in server.go.
func (s *Server) jobRoutes() []route {
	return nil
}
