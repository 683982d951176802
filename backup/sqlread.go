package backup

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
)

// sqlReaders is the number of sessions reading file chunks in parallel
// with METHOD sql. The server copies every chunk several times
// (pg_read_binary_file, byteasend, the message buffer); one session
// spends about 1.8 s of server CPU per GB, so on one backend the server is
// the bottleneck. Two sessions split that work over two backends.
const sqlReaders = 2

// chunk is the answer to one chunk read.
type chunk struct {
	data []byte
	ok   bool // false: the file does not exist (any more)
	err  error
}

// readReq asks a reader for a chunk of a file.
type readReq struct {
	name   string
	off, n int64
	res    chan chunk // capacity 1: the reader never waits
}

// chunkReaders reads file chunks over several sessions: the backup's own
// and helpers opened for this. Requests go round robin; each session
// answers its requests in order. The backup's own session is used by its
// reader only while requests are outstanding, which copyFile waits for
// before it returns.
type chunkReaders struct {
	queues []chan readReq
	wg     sync.WaitGroup   // the reader goroutines
	conns  []*pgconn.PgConn // the helpers, closed by close
	next   int
	bufs   chan []byte // chunk buffers to reuse
}

// newChunkReaders starts readers on own and on up to extra new sessions
// opened with connect. A helper that cannot be opened is done without,
// unless ctx ended.
func newChunkReaders(ctx context.Context, own *sqlConn, extra int, connect func(context.Context, bool) (*pgconn.PgConn, error)) (*chunkReaders, error) {
	conns := []*sqlConn{own}
	r := &chunkReaders{bufs: make(chan []byte, 2*sqlReaders+1)}
	for range extra {
		conn, err := connect(ctx, false)
		if err == nil {
			_, err = conn.Prepare(ctx, readStmt, readSQL, nil)
			if err != nil {
				closeConn(conn)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				r.closeHelpers()
				return nil, canceledError(ctx)
			}
			// Most likely too many connections: the backup's own session
			// does all the reading then, as slower but as correct.
			break
		}
		r.conns = append(r.conns, conn)
		conns = append(conns, &sqlConn{ctx: own.ctx, conn: conn})
	}
	for _, c := range conns {
		q := make(chan readReq, 2*sqlReaders)
		r.queues = append(r.queues, q)
		r.wg.Go(func() {
			for req := range q {
				var buf []byte
				select {
				case buf = <-r.bufs:
				default:
				}
				data, ok, err := c.readInto(buf, req.name, req.off, req.n)
				req.res <- chunk{data, ok, err}
			}
		})
	}
	return r, nil
}

// window is how many requests copyFile keeps outstanding: two per
// session, so that each has the next one waiting when it finishes one.
func (r *chunkReaders) window() int { return 2 * len(r.queues) }

// request queues a chunk read; the answer arrives on the returned channel.
func (r *chunkReaders) request(name string, off, n int64) <-chan chunk {
	req := readReq{name: name, off: off, n: n, res: make(chan chunk, 1)}
	r.queues[r.next] <- req
	r.next = (r.next + 1) % len(r.queues)
	return req.res
}

// release gives back the data of a chunk once it is written.
func (r *chunkReaders) release(data []byte) {
	if cap(data) == 0 {
		return
	}
	select {
	case r.bufs <- data:
	default:
	}
}

// close stops the readers and closes the helper sessions.
func (r *chunkReaders) close() {
	for _, q := range r.queues {
		close(q)
	}
	r.wg.Wait()
	r.closeHelpers()
}

func (r *chunkReaders) closeHelpers() {
	for _, c := range r.conns {
		closeConn(c)
	}
	r.conns = nil
}
