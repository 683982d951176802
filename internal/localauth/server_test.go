package localauth

import (
	"bufio"
	"errors"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// testServer is the smallest server that authenticates with this package:
// it reads the StartupMessage, calls Authenticate, sends the rest of the
// startup reply a real server sends, and answers every query with one row,
// "1", so that a client can show it got in. It is what the proxy will do,
// minus everything else.
type testServer struct {
	addr    string
	results chan error // Authenticate's result, one per connection
}

func startServer(t *testing.T, f *File) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &testServer{addr: ln.Addr().String(), results: make(chan error, 16)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(t, conn, f)
		}
	}()
	return s
}

func (s *testServer) serve(t *testing.T, conn net.Conn, f *File) {
	defer conn.Close()
	rw := bufio.NewReadWriter(bufio.NewReader(conn), bufio.NewWriter(conn))
	// The backend writes to conn directly: its Flush would not flush rw.
	be := pgproto3.NewBackend(rw, conn)
	msg, err := be.ReceiveStartupMessage()
	if _, ok := msg.(*pgproto3.SSLRequest); ok && err == nil {
		rw.WriteString("N")
		rw.Flush()
		msg, err = be.ReceiveStartupMessage()
	}
	sm, ok := msg.(*pgproto3.StartupMessage)
	if err != nil || !ok {
		t.Errorf("test server: startup: %T %v", msg, err)
		return
	}
	user := sm.Parameters["user"]
	if e, found := f.Lookup(user); found {
		err = Authenticate(rw, user, e)
	} else {
		err = NoSuchUser(user)
	}
	s.results <- err
	if err != nil {
		if pe, ok := errors.AsType[*pgerr.Error](err); ok {
			rw.Write(pe.AppendWire(nil))
			rw.Flush()
		}
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
	be.Send(&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 2}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.Query:
			be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{
				Name: []byte("ok"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
			be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("1")}})
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if be.Flush() != nil {
				return
			}
		case *pgproto3.Terminate:
			return
		}
	}
}

func splitHostPort(addr string) (string, string, error) { return net.SplitHostPort(addr) }
