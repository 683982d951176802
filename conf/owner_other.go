//go:build !unix

package conf

import "os"

// ownedByRoot is false where there is no root; the permission check that
// asks is skipped on Windows anyway.
func ownedByRoot(os.FileInfo) bool { return false }
