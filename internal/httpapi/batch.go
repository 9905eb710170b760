package httpapi

// batchRoutes lists the routes of this feature area; they join the table in server.go.
func (s *Server) batchRoutes() []route {
	return nil
}
