package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/stats"
)

// errInBlock is PostgreSQL's refusal of VACUUM and the like in a
// transaction block, for standalone commands.
func errInBlock(what string) *pgerr.Error {
	return &pgerr.Error{Severity: pgerr.SeverityError, Code: pgerr.ActiveSQLTransaction,
		Message: what + " cannot run inside a transaction block"}
}

// execute runs a prepared command, the command name. Standalone commands
// (which do their work on the proxy's own connections) are refused inside
// a transaction block, and get a context that a cancel request or the
// client leaving cancels. The session shows the command while it runs,
// and the server counts it with its outcome and duration when it ends.
func (e *engine) execute(c *execConn, name string, prep commands.Prepared) (out *commands.Outcome, err error) {
	e.st.StartCommand(name)
	start := time.Now()
	defer func() {
		e.cmds.Record(name, commandOutcome(err), time.Since(start))
		status, _, _ := e.p.state()
		e.st.EndCommand(status)
	}()
	if _, ok := prep.(commands.Standalone); !ok {
		return prep.Execute(context.Background(), c)
	}
	if status, _, _ := e.p.state(); status != pgwire.TxIdle {
		return nil, errInBlock(commandName(prep))
	}
	// BASE BACKUP reports what it wrote to the server's recorder.
	ctx, cancel := context.WithCancel(stats.WithBackups(context.Background(), e.backups))
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

// commandOutcome is the outcome a command's error is counted under: the
// SQLSTATE class of the error the client gets, "ok" without one, XX
// (internal error) for an error that is not a PostgreSQL one.
func commandOutcome(err error) string {
	if err == nil {
		return stats.OutcomeOK
	}
	var se *commands.ServerError
	if errors.As(err, &se) {
		return stats.OutcomeOf(string(se.Code))
	}
	var pe *pgerr.Error
	if errors.As(err, &pe) {
		return stats.OutcomeOf(string(pe.Code))
	}
	return stats.OutcomeOf("")
}
