package proxy

import (
	"context"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// errInBlock is PostgreSQL's refusal of VACUUM and the like in a
// transaction block, for standalone commands.
func errInBlock(what string) *pgerr.Error {
	return &pgerr.Error{Severity: pgerr.SeverityError, Code: pgerr.ActiveSQLTransaction,
		Message: what + " cannot run inside a transaction block"}
}

// execute runs a prepared command. Standalone commands (which do their
// work on the proxy's own connections) are refused inside a transaction
// block, and get a context that a cancel request or the client leaving
// cancels.
func (e *engine) execute(c *execConn, prep commands.Prepared) (*commands.Outcome, error) {
	if _, ok := prep.(commands.Standalone); !ok {
		return prep.Execute(context.Background(), c)
	}
	if status, _, _ := e.p.state(); status != pgwire.TxIdle {
		return nil, errInBlock(commandName(prep))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.cmdCancel.Store(&cancel)
	defer e.cmdCancel.Store(nil)
	stop := e.p.watchClient(cancel)
	defer stop()
	return prep.Execute(ctx, c)
}

// commandName names a prepared command in messages.
func commandName(prep commands.Prepared) string {
	if n, ok := prep.(interface{ CommandName() string }); ok {
		return n.CommandName()
	}
	return "this command"
}
