// A Go client (standard library only: net/http over crypto/tls) for runbom's HTTP coverage
// tests (`sidecar/runbom/tests/go_tls.rs`), built at test time with Debian's golang-go.
//
//	go_client URL MODEL CA_FILE START_FILE
//
// Waits until START_FILE exists (so that the test can let runbom hook this new executable
// first; at most 30 s), then sends one OpenAI-style POST (JSON body with `model`) trusting CA_FILE, reads the answer
// and prints one JSON line {"pid", "status", "proto"}. Go picks HTTP/2 when the server offers
// it (ALPN h2), else HTTP/1.1.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: go_client URL MODEL CA_FILE START_FILE")
		os.Exit(2)
	}
	url, model, caFile, startFile := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	ca, err := os.ReadFile(caFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			ForceAttemptHTTP2: true,
		},
		Timeout: 20 * time.Second,
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(startFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "no start file", startFile)
			os.Exit(1)
		}
	}
	body, _ := json.Marshal(map[string]any{
		"model":    model,
		"messages": []map[string]string{{"role": "user", "content": "hello"}},
	})
	resp, err := client.Post(url, "application/json", strings.NewReader(string(body)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	out, _ := json.Marshal(map[string]any{"pid": os.Getpid(), "status": resp.StatusCode, "proto": resp.Proto})
	fmt.Println(string(out))
}
