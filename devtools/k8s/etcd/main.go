// Command etcd is the etcd server, as etcd's own main: etcdmain.Main. Its repository's root module (which holds
// that main) carries replace lines of its own, so it cannot be built as a dependency; this module can.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
