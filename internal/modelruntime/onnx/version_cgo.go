//go:build cgo

package onnx

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

// The first two members of OrtApiBase (onnxruntime_c_api.h); stable across versions.
typedef struct {
	const void *(*GetApi)(uint32_t version);
	const char *(*GetVersionString)(void);
} slipwayOrtApiBase;

typedef const slipwayOrtApiBase *(*slipwayGetApiBase)(void);

// slipway_ort_version dlopens path and returns its version string, or NULL with *err
// set to a dlerror() message (or to "" when the library is not ONNX Runtime). The
// library stays loaded: the onnxruntime_go binding opens it again right after.
static const char *slipway_ort_version(const char *path, const char **err) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) { *err = dlerror(); return NULL; }
	slipwayGetApiBase get = (slipwayGetApiBase) dlsym(h, "OrtGetApiBase");
	if (!get) { *err = ""; dlclose(h); return NULL; }
	const slipwayOrtApiBase *base = get();
	if (!base || !base->GetVersionString) { *err = ""; return NULL; }
	return base->GetVersionString();
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// libraryVersion loads the library at path and asks it for its version.
func libraryVersion(path string) (string, error) {
	cPath := C.CString(path)
	defer C.free(unsafe.Pointer(cPath))
	var cErr *C.char
	v := C.slipway_ort_version(cPath, &cErr)
	if v != nil {
		return C.GoString(v), nil
	}
	if msg := C.GoString(cErr); msg != "" {
		return "", errors.New(msg)
	}
	return "", fmt.Errorf("%s is not an ONNX Runtime library (no OrtGetApiBase)", path)
}
