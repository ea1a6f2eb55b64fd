// A Go net/http client: one keep-alive connection (MaxConnsPerHost 1), the requests named
// on the command line in order, each "GET PATH", "POST PATH SIZE" (a body of SIZE bytes
// with its length) or "CHUNKED PATH SIZE" (the same body sent chunked: length unknown).
// Prints per answer: METHOD PATH STATUS BODY_BYTES SHA256 LOCAL_PORT.
// Usage: go_client BASE_URL REQUEST...
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
)

func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func main() {
	base := os.Args[1]
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, DisableCompression: true}}
	for _, spec := range os.Args[2:] {
		f := strings.Fields(spec)
		var req *http.Request
		var err error
		switch f[0] {
		case "GET":
			req, err = http.NewRequest("GET", base+f[1], nil)
		default:
			n, _ := strconv.Atoi(f[2])
			var r io.Reader = bytes.NewReader(body(n))
			if f[0] == "CHUNKED" {
				r = io.MultiReader(r) // hides the length: the body goes chunked
			}
			req, err = http.NewRequest("POST", base+f[1], r)
		}
		if err != nil {
			panic(err)
		}
		local := ""
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			local = i.Conn.LocalAddr().String()
		}}
		req = req.WithContext(httptrace.WithClientTrace(context.Background(), trace))
		res, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		data, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			panic(err)
		}
		port := local[strings.LastIndex(local, ":")+1:]
		fmt.Printf("%s %s %d %d %x %s\n", f[0], f[1], res.StatusCode, len(data), sha256.Sum256(data), port)
	}
}
