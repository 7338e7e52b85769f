package conformance

import "github.com/ktdproject/ktd/internal/txtar"

// Unescape decodes an escaped-text section (see txtar.Unescape): every line
// break is removed (layout only), then \\, \t, \r, \n and \xHH are undone.
func Unescape(text []byte) ([]byte, error) { return txtar.Unescape(text) }

// Escape is the inverse of Unescape without the layout line breaks.
func Escape(b []byte) string { return txtar.Escape(b) }

// DecodeHex decodes a commented hex section: '#' starts a comment running
// to the end of the line; whitespace is ignored.
func DecodeHex(text []byte) ([]byte, error) { return txtar.DecodeHex(text) }
