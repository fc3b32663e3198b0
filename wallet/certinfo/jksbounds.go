package certinfo

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// checkJKSBounds walks the JKS framing and checks that every declared length
// fits in the bytes that are actually there. keystore-go allocates whatever
// a length field says (up to 4 GiB per field, and a slice of up to 2^32
// certificates), so a corrupt or hostile store could otherwise exhaust
// memory before any error is returned. This walker decodes nothing.
func checkJKSBounds(data []byte) error {
	r := boundsReader{b: data}
	if r.u32() != 0xfeedfeed {
		return errors.New("not a JKS store (bad magic)")
	}
	version := r.u32()
	if version != 1 && version != 2 {
		return fmt.Errorf("unsupported JKS version %d", version)
	}
	entries := r.u32()
	for i := uint32(0); i < entries && r.err == nil; i++ {
		tag := r.u32()
		r.skip(int(r.u16())) // alias
		r.skip(8)            // creation time
		switch tag {
		case 1: // private key entry
			r.skip(int(r.u32()))
			certs := r.u32()
			if int64(certs) > int64(len(r.b)) {
				return errors.New("malformed JKS: certificate count exceeds the file")
			}
			for j := uint32(0); j < certs && r.err == nil; j++ {
				r.cert(version)
			}
		case 2: // trusted certificate entry
			r.cert(version)
		default:
			return fmt.Errorf("malformed JKS: unknown entry tag %d", tag)
		}
	}
	if r.err != nil {
		return r.err
	}
	return nil
}

type boundsReader struct {
	b   []byte
	err error
}

func (r *boundsReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errors.New("malformed JKS: a length field exceeds the file")
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *boundsReader) skip(n int) { r.take(n) }

func (r *boundsReader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *boundsReader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *boundsReader) cert(version uint32) {
	if version == 2 {
		r.skip(int(r.u16())) // certificate type, "X.509"
	}
	r.skip(int(r.u32()))
}
