// A Go net/http server over crypto/tls: go_tls_server PORT CERT KEY. The TLS tests build it
// twice (with symbols, and stripped) to check how nodetap reports Go processes.
package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello from go\n"))
	})
	if err := http.ListenAndServeTLS("127.0.0.1:"+os.Args[1], os.Args[2], os.Args[3], nil); err != nil {
		os.Exit(1)
	}
}
