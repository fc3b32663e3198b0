package cestest

import "testing"

func BenchmarkRotate(b *testing.B) {
	for _, change := range []string{"credentials", "wallet", "all"} {
		b.Run(change, func(b *testing.B) {
			s := NewServer(Options{})
			defer s.Close()
			for b.Loop() {
				s.Rotate(change)
			}
		})
	}
}
