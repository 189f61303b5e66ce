package meshnet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptrace"
	"sync"
	"testing"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/meshnet"
)

// TestHTTP runs net/http's server and client over the adapter, on a
// direct and a relayed path: the caller's NodeID reaches the handler as
// RemoteAddr, connections are reused between requests, a 1 MiB body
// makes the round trip, and concurrent requests all succeed.
func TestHTTP(t *testing.T) {
	for _, path := range []struct {
		name string
		pair func(testing.TB) (*mesh.Mesh, *mesh.Mesh)
	}{{"direct", directPair}, {"relayed", relayedPair}} {
		t.Run(path.name, func(t *testing.T) {
			a, b := path.pair(t)
			serveHTTP(t, b)
			tr := &http.Transport{DialContext: (&meshnet.Dialer{Mesh: a, Protocol: testProto}).DialContext}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			base := "http://" + b.ID().String()

			if got := get(t, client, base+"/whoami"); got != a.ID().String() {
				t.Fatalf("the handler saw RemoteAddr %q, want %q", got, a.ID())
			}

			reused := false
			trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = reused || i.Reused }}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", base+"/whoami", nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if !reused {
				t.Error("the client opened a new connection instead of reusing the idle one")
			}

			body := make([]byte, 1<<20)
			rand.Read(body)
			resp, err = client.Post(base+"/echo", "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			echo, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(echo, body) {
				t.Fatalf("echo: %d bytes back (equal %t), %v", len(echo), bytes.Equal(echo, body), err)
			}

			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					if got := get(t, client, base+"/whoami"); got != a.ID().String() {
						t.Errorf("concurrent request: %q", got)
					}
				})
			}
			wg.Wait()
		})
	}
}

// serveHTTP serves /whoami (the caller's address) and /echo (the request
// body) on m's testProto until the test ends.
func serveHTTP(t *testing.T, m *mesh.Mesh) {
	mux := http.NewServeMux()
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.RemoteAddr)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	srv := &http.Server{Handler: mux, ErrorLog: log.New(tbWriter{t}, "", 0)}
	l, err := meshnet.Listen(m, testProto)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
}

// get returns the body of a GET of url.
func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return string(b)
}

// tbWriter sends a server's log lines to the test's log.
type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSuffix(p, []byte("\n"))))
	return len(p), nil
}
