package walarchive

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/DataDog/zstd"
)

// fakeSegment is testSegSize bytes that compress as WAL does: some
// incompressible pages, some repetitive ones, and zeros at the end.
func fakeSegment(seed uint64) []byte {
	b := make([]byte, testSegSize)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < len(b)/2; i++ {
		if (i/8192)%3 == 0 {
			b[i] = byte(r.Uint32())
		} else {
			b[i] = byte(i % 7)
		}
	}
	return b
}

func segmentDir(t *testing.T, name string, content []byte) (*os.Root, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root, dir
}

// served reads name as restore_command would get it.
func served(t *testing.T, root *os.Root, name string) []byte {
	t.Helper()
	rc, _, err := OpenFile(root, name, testSegSize)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestCompressSegment(t *testing.T) {
	const name = "000000010000000A000000FF"
	for _, tc := range []struct {
		name    string
		content []byte
		level   int
	}{
		{"default level", fakeSegment(1), 0},
		{"fast", fakeSegment(2), 1},
		{"strong", fakeSegment(3), 19},
		{"all zeros", make([]byte, testSegSize), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := segmentDir(t, name, tc.content)
			if err := compressSegment(root, name, tc.level); err != nil {
				t.Fatal(err)
			}
			if got := dirNames(t, dir); !slices.Equal(got, []string{name + compressedSuffix}) {
				t.Fatalf("files after compression: %v", got)
			}
			z, err := os.ReadFile(filepath.Join(dir, name+compressedSuffix))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := zstd.Decompress(nil, z)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(plain, tc.content) {
				t.Fatal("NAME.zst does not decompress to NAME's bytes")
			}
			if len(z) >= len(tc.content)*3/4 {
				t.Errorf("%d bytes compressed to %d", len(tc.content), len(z))
			}
			if fi, _ := os.Stat(filepath.Join(dir, name+compressedSuffix)); fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode().Perm())
			}
		})
	}
}

func TestCompressSegmentRefuses(t *testing.T) {
	for _, name := range []string{"000000010000000000000001.partial", "00000002.history", "../000000010000000000000001", "000000010000000000000002", "pgverbs_wal_archive.json"} {
		t.Run(name, func(t *testing.T) {
			root, dir := segmentDir(t, "000000010000000000000001", fakeSegment(4))
			if err := compressSegment(root, name, 0); err == nil {
				t.Fatal("compressed")
			}
			if got := dirNames(t, dir); !slices.Equal(got, []string{"000000010000000000000001"}) {
				t.Errorf("files after a refusal: %v", got)
			}
		})
	}
}

// TestCompressSegmentCrash stops compressSegment between each of its steps
// as a crash would (runtime.Goexit: no code of the function runs after the
// point, files are closed as the kernel would) and checks that the
// segment is still served whole, that cleanTemp leaves only NAME or
// NAME.zst (and both after the rename), and that a new compression
// finishes the job.
func TestCompressSegmentCrash(t *testing.T) {
	const name = "000000020000000000000003"
	content := fakeSegment(5)
	for _, tc := range []struct {
		step  string
		after []string // files left by the crash, after cleanTemp
	}{
		{stepWritten, []string{name}},
		{stepSynced, []string{name}},
		{stepRenamed, []string{name, name + compressedSuffix}},
		{stepRemoved, []string{name + compressedSuffix}},
	} {
		t.Run(tc.step, func(t *testing.T) {
			root, dir := segmentDir(t, name, content)
			reached := false
			compressHook = func(step string) {
				if step == tc.step {
					reached = true
					runtime.Goexit()
				}
			}
			defer func() { compressHook = func(string) {} }()
			done := make(chan error, 1)
			go func() {
				defer close(done)
				done <- compressSegment(root, name, 0)
			}()
			if err, finished := <-done; finished {
				t.Fatalf("compressSegment returned %v: the crash point was not reached", err)
			}
			if !reached {
				t.Fatal("the crash point was not reached")
			}
			compressHook = func(string) {}
			if !bytes.Equal(served(t, root, name), content) {
				t.Fatal("after the crash the segment is not served whole")
			}
			if err := cleanTemp(root); err != nil {
				t.Fatal(err)
			}
			if got := dirNames(t, dir); !slices.Equal(got, tc.after) {
				t.Fatalf("files after the crash and cleanTemp: %v, want %v", got, tc.after)
			}
			if !bytes.Equal(served(t, root, name), content) {
				t.Fatal("after cleanTemp the segment is not served whole")
			}
			if slices.Contains(tc.after, name) {
				if err := compressSegment(root, name, 0); err != nil {
					t.Fatal(err)
				}
			}
			if got := dirNames(t, dir); !slices.Equal(got, []string{name + compressedSuffix}) {
				t.Fatalf("files after compressing again: %v", got)
			}
			if !bytes.Equal(served(t, root, name), content) {
				t.Fatal("the compressed segment is not served whole")
			}
		})
	}
}

func TestCleanTemp(t *testing.T) {
	root, dir := segmentDir(t, "000000010000000000000001", fakeSegment(6))
	for _, n := range []string{"000000010000000000000002" + tempSuffix, "000000010000000000000001" + tempSuffix, "notes" + tempSuffix, "00000002.history"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := cleanTemp(root); err != nil {
		t.Fatal(err)
	}
	want := []string{"000000010000000000000001", "00000002.history", "notes" + tempSuffix}
	if got := dirNames(t, dir); !slices.Equal(got, want) {
		t.Errorf("after cleanTemp: %v, want %v", got, want)
	}
}
