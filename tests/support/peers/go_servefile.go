// A Go net/http server answering GET /NAME with http.ServeFile(DIR/NAME): Go sends the
// file with sendfile(2) without an offset pointer (from the file position).
// Usage: go_servefile PORT DIR
package main

import (
	"net/http"
	"os"
	"path/filepath"
)

func main() {
	port, dir := os.Args[1], os.Args[2]
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, filepath.Base(r.URL.Path)))
	})
	if err := http.ListenAndServe("127.0.0.1:"+port, nil); err != nil {
		panic(err)
	}
}
