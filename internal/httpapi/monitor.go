package httpapi

// monitorRoutes lists the routes of this feature area; they join the table in server.go.
func (s *Server) monitorRoutes() []route {
	return nil
}
