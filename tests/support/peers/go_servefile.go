// A Go net/http server answering GET /NAME with http.ServeFile(DIR/NAME): Go sends the
// file with sendfile(2) without an offset pointer (from the file position). POST /upload
// reads the body and answers "got N". With LOG, one line per request is appended there:
// METHOD PATH CLIENT_PORT REQUEST_BODY_BYTES STATUS.
// Usage: go_servefile PORT DIR [LOG]
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
)

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// ReadFrom keeps the sendfile path of the wrapped writer.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	return r.ResponseWriter.(io.ReaderFrom).ReadFrom(src)
}

func main() {
	port, dir := os.Args[1], os.Args[2]
	var log *os.File
	var mu sync.Mutex
	if len(os.Args) > 3 {
		f, err := os.OpenFile(os.Args[3], os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			panic(err)
		}
		log = f
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{w, 200}
		var n int64
		if r.Method == http.MethodPost {
			n, _ = io.Copy(io.Discard, r.Body)
			fmt.Fprintf(rec, "got %d", n)
		} else {
			http.ServeFile(rec, r, filepath.Join(dir, filepath.Base(r.URL.Path)))
		}
		if log != nil {
			_, cport, _ := net.SplitHostPort(r.RemoteAddr)
			mu.Lock()
			fmt.Fprintf(log, "%s %s %s %d %d\n", r.Method, r.URL.Path, cport, n, rec.status)
			mu.Unlock()
		}
	})
	if err := http.ListenAndServe("127.0.0.1:"+port, nil); err != nil {
		panic(err)
	}
}
