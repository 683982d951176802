package walarchive

import (
	"os"
	"slices"
	"testing"
)

func TestSetAside(t *testing.T) {
	const segSize = 16 << 20
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	files := []string{
		"000000010000000000000001", "000000010000000000000002", "000000010000000000000003",
		"000000010000000000000004.zst", "000000010000000000000005.partial", "00000002.history",
		"000000020000000000000003.partial",
	}
	for _, f := range files {
		if err := root.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A diverged copy from an earlier SET SOURCE is not overwritten.
	if err := root.WriteFile("000000010000000000000004.diverged.zst", []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := &archiveRun{dir: root, st: state{SegmentSize: segSize}}
	sp := uint64(3*segSize + 0x25A70) // inside segment 3
	moved, keep, err := setAside(run, 1, sp)
	if err != nil {
		t.Fatal(err)
	}
	if keep != 3*segSize {
		t.Errorf("keep %X, want the start of segment 3", keep)
	}
	want := []string{"000000010000000000000003.diverged", "000000010000000000000004.diverged.2.zst", "000000010000000000000005.diverged.partial"}
	if !slices.Equal(moved, want) {
		t.Errorf("moved %v, want %v", moved, want)
	}
	left, err := scan(root, segSize)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range left {
		names = append(names, f.Name)
	}
	// What stays is what the archive serves: the diverged names are not
	// WAL file names at all.
	if wantLeft := []string{"00000002.history", "000000010000000000000001", "000000010000000000000002", "000000020000000000000003.partial"}; !slices.Equal(names, wantLeft) {
		t.Errorf("the archive holds %v, want %v", names, wantLeft)
	}
	if b, _ := root.ReadFile("000000010000000000000004.diverged.zst"); string(b) != "old" {
		t.Error("an earlier diverged file was overwritten")
	}
}

func TestHistorySwitch(t *testing.T) {
	content := []byte("1\t0/3025A70\tno recovery target specified\n\n2\t1/2000000\tat restore point \"x\"\n")
	for tli, want := range map[uint32]uint64{1: 0x3025A70, 2: 0x102000000} {
		if got, ok := historySwitch(content, tli); !ok || got != want {
			t.Errorf("historySwitch(%d) = %X, %v; want %X", tli, got, ok, want)
		}
	}
	if _, ok := historySwitch(content, 3); ok {
		t.Error("timeline 3 found in a history without it")
	}
}
