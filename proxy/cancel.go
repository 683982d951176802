package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"time"

	"go.uber.org/zap"
)

// cancelKey identifies a session for CancelRequest: the backend's process id
// (kept, so pg_backend_pid() and NOTIFY sender ids match what the client was
// told) followed by a secret the proxy generated. Backend process ids are
// unique among a server's live connections, so the pair is unique.
type cancelKey string

func makeCancelKey(pid uint32, secret []byte) cancelKey {
	b := make([]byte, 4+len(secret))
	binary.BigEndian.PutUint32(b, pid)
	copy(b[4:], secret)
	return cancelKey(b)
}

// newSecret returns n random bytes for a client-facing cancel secret.
func newSecret(n int) []byte {
	b := make([]byte, n)
	// crypto/rand.Read never fails on Linux (Go 1.24+ panics instead).
	_, _ = rand.Read(b)
	return b
}

// cancelTimeout bounds delivering a cancel to the server.
const cancelTimeout = 10 * time.Second

// handleCancel forwards a client's CancelRequest to the backend process it
// names, if the key is known. Like PostgreSQL it never answers: a wrong key
// is indistinguishable from a delivered one.
func (s *Server) handleCancel(log *zap.Logger, p *startupPacket) {
	v, ok := s.cancels.Load(makeCancelKey(p.pid, p.secret))
	if !ok {
		log.Debug("cancel request with unknown key")
		return
	}
	target := v.(*session)
	// A standalone command (BASE BACKUP) runs on the proxy's own
	// connections: cancel it directly. A key is registered only after the
	// engine exists.
	target.eng.cancelRunning()
	ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
	defer cancel()
	if err := target.target.Cancel(ctx, target.backendPID, target.backendSecret); err != nil {
		log.Warn("could not forward cancel request", zap.Error(err))
		return
	}
	target.logger().Debug("query cancel forwarded")
}
