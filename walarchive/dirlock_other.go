//go:build !unix

package walarchive

import "os"

// lockDir has no lock to take where flock(2) does not exist: the one
// archive per directory is then the operator's to ensure.
func lockDir(*os.Root) (*os.File, error) { return nil, nil }
