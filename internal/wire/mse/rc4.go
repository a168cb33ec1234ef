package mse

// rc4Cipher is RC4 with its state in 256 bytes. crypto/rc4 keeps the
// permutation in 256 uint32s (1 KiB); an encrypted connection holds two
// ciphers for as long as it lives, and the auditor holds thousands of idle
// connections, so the byte form saves 1.5 KiB on each. The keystream is
// the same (a test checks it against crypto/rc4).
type rc4Cipher struct {
	s    [256]byte
	i, j uint8
}

// newRC4 runs RC4's key schedule; key is 1 to 256 bytes long.
func newRC4(key []byte) *rc4Cipher {
	c := &rc4Cipher{}
	for i := range c.s {
		c.s[i] = byte(i)
	}
	var j uint8
	for i := range 256 {
		j += c.s[i] + key[i%len(key)]
		c.s[i], c.s[j] = c.s[j], c.s[i]
	}
	return c
}

// XORKeyStream sets dst to src XOR the keystream; dst and src may be the
// same slice, and dst must be at least as long as src.
func (c *rc4Cipher) XORKeyStream(dst, src []byte) {
	if len(src) == 0 {
		return
	}
	i, j := c.i, c.j
	_ = dst[len(src)-1] // one bounds check for the loop
	for k, v := range src {
		i++
		si := c.s[i]
		j += si
		sj := c.s[j]
		c.s[i], c.s[j] = sj, si
		dst[k] = v ^ c.s[si+sj]
	}
	c.i, c.j = i, j
}
