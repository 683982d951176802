package backup

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"
	"sync"
	"time"
	"unicode/utf8"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// manifestBuilder writes a backup manifest the way PostgreSQL's
// backup_manifest.c does (version 1), so that pg_verifybackup accepts it:
// one line per file, then the WAL ranges, then the SHA-256 of everything
// before the last line.
type manifestBuilder struct {
	algo string // "NONE", "CRC32C", "SHA224", ...

	mu    sync.Mutex
	buf   bytes.Buffer
	first bool
}

func newManifest(algo string) *manifestBuilder {
	m := &manifestBuilder{algo: algo, first: true}
	m.buf.WriteString("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [")
	return m
}

// newHash returns the checksum of the manifest's algorithm, nil for NONE.
func newHash(algo string) hash.Hash {
	switch algo {
	case "CRC32C":
		return crc32.New(castagnoli)
	case "SHA224":
		return sha256.New224()
	case "SHA256":
		return sha256.New()
	case "SHA384":
		return sha512.New384()
	case "SHA512":
		return sha512.New()
	}
	return nil
}

// checksumHex renders a finished checksum as PostgreSQL does: the bytes of
// the digest in hex; for CRC32C, the bytes of the uint32 in the server's
// (little-endian) memory order.
func checksumHex(algo string, h hash.Hash) string {
	if algo == "CRC32C" {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], h.(hash.Hash32).Sum32())
		return hex.EncodeToString(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// addFile adds a file entry; sum is "" for NONE.
func (m *manifestBuilder) addFile(path string, size int64, mtime time.Time, sum string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.first {
		m.buf.WriteByte('\n')
		m.first = false
	} else {
		m.buf.WriteString(",\n")
	}
	if utf8.ValidString(path) {
		m.buf.WriteString("{ \"Path\": ")
		writeJSONString(&m.buf, path)
	} else {
		m.buf.WriteString("{ \"Encoded-Path\": \"")
		m.buf.WriteString(hex.EncodeToString([]byte(path)))
		m.buf.WriteByte('"')
	}
	fmt.Fprintf(&m.buf, ", \"Size\": %d, \"Last-Modified\": \"%s\"", size, mtime.UTC().Format("2006-01-02 15:04:05 GMT"))
	if m.algo != "NONE" {
		fmt.Fprintf(&m.buf, ", \"Checksum-Algorithm\": \"%s\", \"Checksum\": \"%s\"", m.algo, sum)
	}
	m.buf.WriteString(" }")
}

// finish adds the WAL range and the manifest checksum and returns the
// manifest.
func (m *manifestBuilder) finish(tli uint32, start, end LSN) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.buf.WriteString("\n],\n\"WAL-Ranges\": [\n")
	fmt.Fprintf(&m.buf, "{ \"Timeline\": %d, \"Start-LSN\": \"%s\", \"End-LSN\": \"%s\" }", tli, start, end)
	m.buf.WriteString("\n],\n")
	sum := sha256.Sum256(m.buf.Bytes())
	fmt.Fprintf(&m.buf, "\"Manifest-Checksum\": \"%s\"}\n", hex.EncodeToString(sum[:]))
	return m.buf.Bytes()
}

// writeJSONString quotes s as PostgreSQL's escape_json does.
func writeJSONString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		default:
			if c < 0x20 {
				fmt.Fprintf(b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}
