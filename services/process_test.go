package services_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// binDir holds the shop binary the process tests run; TestMain removes it.
var binDir string

// shopBinary builds the shop once for the tests that run services as
// processes of their own, to kill them as an operator or the kernel would.
var shopBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "services-test-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "shop")
	if out, err := exec.Command("go", "build", "-o", bin, "../services/cmd/shop").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build shop: %v\n%s", err, out)
	}
	return bin, nil
})

// shopBin is the path of the shop binary, built on first use.
func shopBin(t *testing.T) string {
	t.Helper()
	bin, err := shopBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}
