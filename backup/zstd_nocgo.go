//go:build !cgo

package backup

import (
	"io"

	"github.com/klauspost/compress/zstd"
)

// newZstdWriter compresses with the pure Go encoder when the proxy is
// built without cgo; level 0 is zstd's default.
func newZstdWriter(w io.Writer, level int) (io.WriteCloser, error) {
	zl := zstd.SpeedDefault
	if level > 0 {
		zl = zstd.EncoderLevelFromZstd(level)
	}
	return zstd.NewWriter(w, zstd.WithEncoderLevel(zl), zstd.WithEncoderConcurrency(1))
}
