package httpapi

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"sort"
)

// The OpenAPI document is openapi.json (the base: info, security, shared components, catalog and
// deployments) merged with one fragment per feature area in openapi/*.json ({"paths", "components", "tags"}),
// so that areas are documented next to each other without editing one giant file. openapi_test.go checks the
// merged document against the route table of server.go in both directions.
//
//go:embed openapi.json openapi/*.json
var openAPIFiles embed.FS

var openAPIDocument = mustMergeOpenAPI(openAPIFiles)

func mustMergeOpenAPI(files fs.FS) []byte {
	doc, err := mergeOpenAPI(files)
	if err != nil {
		panic(err) // a broken embedded document is a build defect; the tests catch it first
	}
	return doc
}

func mergeOpenAPI(files fs.FS) ([]byte, error) {
	base, err := readJSONObject(files, "openapi.json")
	if err != nil {
		return nil, err
	}
	fragments, err := fs.Glob(files, "openapi/*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(fragments)
	for _, name := range fragments {
		frag, err := readJSONObject(files, name)
		if err != nil {
			return nil, err
		}
		if err := mergeSection(base, frag, "paths", name); err != nil {
			return nil, err
		}
		if comps, ok := frag["components"].(map[string]any); ok {
			baseComps, _ := base["components"].(map[string]any)
			for section, v := range comps {
				wrapped := map[string]any{section: v}
				if err := mergeSection(baseComps, wrapped, section, name); err != nil {
					return nil, err
				}
			}
		}
		if tags, ok := frag["tags"].([]any); ok {
			baseTags, _ := base["tags"].([]any)
			base["tags"] = append(baseTags, tags...)
		}
	}
	addProjectHeader(base)
	return json.MarshalIndent(base, "", "  ")
}

// addProjectHeader documents the Slipway-Project header on every operation that works in a project: all that
// need a token, but the prediction plane's (whose URLs name deployments across projects). Done here, once, so
// that every area's operations carry it without each fragment repeating it.
func addProjectHeader(doc map[string]any) {
	ref := map[string]any{"$ref": "#/components/parameters/ProjectHeader"}
	paths, _ := doc["paths"].(map[string]any)
	for _, item := range paths {
		ops, _ := item.(map[string]any)
		for _, v := range ops {
			op, _ := v.(map[string]any)
			if role, _ := op["x-slipway-role"].(string); role == "" || role == "predict" {
				continue
			}
			params, _ := op["parameters"].([]any)
			op["parameters"] = append(params, ref)
		}
	}
}

func readJSONObject(files fs.FS, name string) (map[string]any, error) {
	b, err := fs.ReadFile(files, name)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("openapi: %s is not valid JSON: %w", name, err)
	}
	return obj, nil
}

// mergeSection adds frag[key]'s entries to base[key]; a key defined twice is an error.
func mergeSection(base, frag map[string]any, key, from string) error {
	add, ok := frag[key].(map[string]any)
	if !ok {
		return nil
	}
	dst, _ := base[key].(map[string]any)
	if dst == nil {
		dst = map[string]any{}
		base[key] = dst
	}
	for k, v := range add {
		if _, dup := dst[k]; dup {
			return fmt.Errorf("openapi: %s defines %s %q again", from, key, k)
		}
		dst[k] = v
	}
	return nil
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(openAPIDocument)
}
