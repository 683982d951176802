package proxy

// LoopBuffers reports how many sessions the server's event loops serve and
// how many relay buffers those sessions hold, counted on the loops
// themselves. It is for tests of an idle session's footprint; a session
// detached for the engine counts, its buffers as they were when it left.
func (s *Server) LoopBuffers() (sessions, buffers int) {
	if s.loops == nil {
		return 0, 0
	}
	// pick orders this read of the loops after their start.
	if _, err := s.loops.pick(); err != nil {
		panic(err)
	}
	for _, lp := range s.loops.loops {
		done := make(chan struct{})
		lp.post(func() {
			defer close(done)
			seen := map[*loopSession]bool{}
			for _, ls := range lp.conns {
				if seen[ls] {
					continue
				}
				seen[ls] = true
				sessions++
				if ls.up.buf != nil {
					buffers++
				}
				if ls.down.buf != nil {
					buffers++
				}
			}
		})
		<-done
	}
	return sessions, buffers
}
