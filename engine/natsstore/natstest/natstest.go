// Package natstest starts NATS servers with JetStream inside the test
// process (github.com/nats-io/nats-server/v2), on 127.0.0.1 with a random
// port and storage in a temporary directory, and opens NATS stores on
// them. No outside service is needed.
package natstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ferrydata/ferry/engine/natsstore"
)

// Start runs a single JetStream server with its storage in dir until the
// test ends, and returns it.
func Start(t testing.TB, dir string) *server.Server {
	t.Helper()
	s, err := StartServer(dir, -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// StartServer runs a single JetStream server (port -1: a random one) with
// its storage in dir. The caller shuts it down.
func StartServer(dir string, port int) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "ferry-test",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoLog:      true,
		NoSigs:     true,
	}
	return run(opts)
}

func run(opts *server.Options) (*server.Server, error) {
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server %s did not start", opts.ServerName)
	}
	return s, nil
}

// Store opens a store on srv with a prefix of its own (so tests may share
// a server) and closes it when the test ends. The lease TTL is 5 s unless
// opts says otherwise: short enough for takeover tests, long enough for a
// loaded machine running -race.
func Store(t testing.TB, url string, opts natsstore.Options) *natsstore.Store {
	t.Helper()
	opts.URL = url
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = 5 * time.Second
	}
	if opts.TailWait == 0 {
		opts.TailWait = 5 * time.Second
	}
	st, err := natsstore.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Cluster runs n JetStream servers routed into one cluster, storage under
// dir, until the test ends. Kill one with its Shutdown.
func Cluster(t testing.TB, dir string, n int) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	servers := make([]*server.Server, n)
	errs := make(chan error, n)
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("ferry-test-%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   fmt.Sprintf("%s/n%d", dir, i),
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "ferry-test",
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		go func() {
			s, err := run(opts)
			servers[i] = s
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range servers {
		t.Cleanup(s.Shutdown)
	}
	// Wait for the JetStream meta group to elect a leader.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range servers {
			if s.JetStreamIsLeader() {
				return servers
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the test cluster elected no JetStream leader")
	return nil
}

// URLs joins the client URLs of servers for a store URL.
func URLs(servers []*server.Server) string {
	var u []string
	for _, s := range servers {
		if s.Running() {
			u = append(u, s.ClientURL())
		}
	}
	return strings.Join(u, ",")
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
