// Command etcd is etcd's own server (etcdmain.Main is what etcd's main package calls), built at the version
// Kubernetes v1.37.2 requires.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
