package cestest_test

import (
	"fmt"

	"github.com/cesd/cesd/ces/cestest"
)

func Example() {
	s := cestest.NewServer(cestest.Options{Seed: 1})
	defer s.Close()

	// Point a client at s.URL and s.TokenURL, trusting s.CACertPEM()
	// (or use s.Client()), with client id "cestest-client" and secret
	// "cestest-secret".
	fmt.Println(s.Current().Number)

	n := s.Rotate("credentials") // new schema passwords; callbacks are POSTed
	g := s.Current()
	fmt.Println(n, g.Change, len(g.Schemas), len(g.Files))
	// Output:
	// 1
	// 2 credentials 3 9
}
