// A Go net/http client over crypto/tls: go_tls_client URL CAFILE N. Waits for a line on
// stdin, then GETs URL N times on one keep-alive connection (HTTP/1.1) and prints the bodies'
// total length.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
)

func main() {
	pem, err := os.ReadFile(os.Args[2])
	if err != nil {
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	n, _ := strconv.Atoi(os.Args[3])
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1
	}}
	bufio.NewReader(os.Stdin).ReadString('\n')
	total := 0
	for i := 0; i < n; i++ {
		resp, err := client.Get(os.Args[1])
		if err != nil {
			os.Exit(3)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		total += len(body)
	}
	fmt.Println(total)
}
