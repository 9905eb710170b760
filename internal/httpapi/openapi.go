package httpapi

import (
	_ "embed"
	"net/http"
)

// openAPIDocument describes every route of the table in server.go; openapi_test.go keeps the two in step.
//
//go:embed openapi.json
var openAPIDocument []byte

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(openAPIDocument)
}
