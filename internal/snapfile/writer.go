package snapfile

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ulikunitz/xz"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/lzo"
)

// WriterConfig describes the file a Writer writes.
type WriterConfig struct {
	Format      Format
	Compression Compression // KTSS only; a KCSS file is never compressed
	TS          uint64      // KTSS header: the dump's update-log clock
	Count       uint64      // KTSS header: the number of records
	Size        uint64      // KTSS header: the database size
}

// Writer writes a snapshot file as KT and KC write them: KTSS with the
// header given and, when compressed, chunks closed at ChunkSize after a
// record; KCSS with its end marker. It is not safe for concurrent use.
type Writer struct {
	w       io.Writer
	cfg     WriterConfig
	buf     []byte // records of the chunk being built, or a record to write
	zbuf    []byte
	records uint64
	closed  bool
}

// NewWriter writes the header of a snapshot file described by cfg to w.
func NewWriter(w io.Writer, cfg WriterConfig) (*Writer, error) {
	var hdr []byte
	switch cfg.Format {
	case KTSS:
		if cfg.Compression > LZMA {
			return nil, fmt.Errorf("snapfile: unknown compression %d", cfg.Compression)
		}
		hdr = append(hdr, magicKTSS...)
		hdr = binary.BigEndian.AppendUint32(hdr, cfg.Compression.Checksum())
		hdr = binary.BigEndian.AppendUint64(hdr, cfg.TS)
		hdr = binary.BigEndian.AppendUint64(hdr, cfg.Count)
		hdr = binary.BigEndian.AppendUint64(hdr, cfg.Size)
	case KCSS:
		if cfg.Compression != None {
			return nil, errors.New("snapfile: a KCSS file cannot be compressed")
		}
		hdr = append(hdr, magicKCSS...)
	default:
		return nil, fmt.Errorf("snapfile: unknown format %d", cfg.Format)
	}
	if _, err := w.Write(hdr); err != nil {
		return nil, err
	}
	return &Writer{w: w, cfg: cfg}, nil
}

// Records returns the number of records written.
func (w *Writer) Records() uint64 { return w.records }

// Add writes one record.
func (w *Writer) Add(key, value []byte) error {
	if w.closed {
		return errors.New("snapfile: write after Close")
	}
	mark := markKTSS
	if w.cfg.Format == KCSS {
		mark = markKCSS
	}
	compressed := w.cfg.Format == KTSS && w.cfg.Compression != None
	if !compressed {
		w.buf = w.buf[:0]
	}
	w.buf = append(w.buf, mark)
	w.buf = ktproto.AppendVarnum(w.buf, uint64(len(key)))
	w.buf = ktproto.AppendVarnum(w.buf, uint64(len(value)))
	w.records++
	if !compressed {
		// Key and value are written as they are, without copying them.
		if _, err := w.w.Write(w.buf); err != nil {
			return err
		}
		if _, err := w.w.Write(key); err != nil {
			return err
		}
		_, err := w.w.Write(value)
		return err
	}
	w.buf = append(w.buf, key...)
	w.buf = append(w.buf, value...)
	if len(w.buf) >= ChunkSize {
		return w.flushChunk()
	}
	return nil
}

// flushChunk compresses the buffered records into one chunk.
func (w *Writer) flushChunk() error {
	if len(w.buf) == 0 {
		return nil
	}
	z, err := compress(w.zbuf[:0], w.buf, w.cfg.Compression)
	if err != nil {
		return err
	}
	w.zbuf = z
	var head [4]byte
	if uint64(len(z)) > 1<<32-1 {
		return fmt.Errorf("snapfile: a compressed chunk of %d bytes does not fit the format", len(z))
	}
	binary.BigEndian.PutUint32(head[:], uint32(len(z)))
	if _, err := w.w.Write(head[:]); err != nil {
		return err
	}
	if _, err := w.w.Write(z); err != nil {
		return err
	}
	w.buf = w.buf[:0]
	return nil
}

// Close writes what remains (the last chunk, or KCSS's end marker). It does
// not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if w.cfg.Format == KCSS {
		_, err := w.w.Write([]byte{endKCSS})
		return err
	}
	if w.cfg.Compression != None {
		return w.flushChunk()
	}
	return nil
}

// compress appends the compressed form of src to dst as KC's compressors
// write it.
func compress(dst, src []byte, c Compression) ([]byte, error) {
	switch c {
	case LZO:
		return lzo.Compress(dst, src), nil
	case Zlib:
		b := bytes.NewBuffer(dst)
		fw, err := flate.NewWriter(b, 6)
		if err != nil {
			return nil, err
		}
		if _, err := fw.Write(src); err != nil {
			return nil, err
		}
		if err := fw.Close(); err != nil {
			return nil, err
		}
		return append(b.Bytes(), 0), nil // KC counts its NUL terminator in the size
	case LZMA:
		b := bytes.NewBuffer(dst)
		// preset 6's 8 MiB dictionary, or less for a smaller chunk (a
		// dictionary larger than the data gains nothing and costs time).
		dict := min(8<<20, max(len(src), 1<<16))
		xw, err := xz.WriterConfig{NoCheckSum: true, DictCap: dict}.NewWriter(b)
		if err != nil {
			return nil, err
		}
		if _, err := xw.Write(src); err != nil {
			return nil, err
		}
		if err := xw.Close(); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	return nil, fmt.Errorf("snapfile: unknown compression %d", c)
}
