package recorder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
)

// mkvWriter writes one track into a WebM or Matroska file. Elements are
// encoded with ebml-go; the write loop is ours so that a failed write (disk
// full, I/O error) can never hang or panic the recorder: the file is cut
// back to the last complete element and finalised as far as possible, so
// everything written before the fault stays playable.
//
// Layout: EBML header, Segment (size patched on close), a reserved Void
// replaced by a SeekHead on close, Info (Duration patched on close),
// Tracks, Clusters of SimpleBlocks (each video cluster starts at a
// keyframe), Cues.
type mkvWriter struct {
	f   recFile
	buf bytes.Buffer
	end int64 // file offset where buf starts = bytes safely in the file

	segSizePos int64 // offset of the Segment's 8-byte size field
	segData    int64 // offset of the Segment's data (positions are relative to it)
	seekPos    int64 // offset of the reserved region for the SeekHead
	infoPos    int64
	tracksPos  int64
	durPos     int64 // offset of the Duration float's 8 bytes

	video     bool
	started   bool
	clusterTC int64 // timecode (ms) of the open cluster
	// offset of the open cluster's 8-byte size field, 0 if none
	clusterSizePos int64
	firstTC        int64
	lastTC         int64
	lastDur        int64
	cues           []webm.CuePoint
	frames         int
	err            error // first write error; the writer is dead after it
	lastFlush      time.Time
	// frames, lastTC and lastDur as of the last successful flush
	safeFrames      int
	safeTC, safeDur int64
	closed          bool
}

// recFile is the file a recording is written to.
type recFile interface {
	io.Writer
	io.WriterAt
	Truncate(size int64) error
	Close() error
	Name() string
}

// openRecFile creates a new recording file; tests replace it to inject faults.
var openRecFile = func(path string) (recFile, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
}

const (
	seekReserve     = 96 // bytes reserved for the SeekHead
	flushThreshold  = 32 << 10
	flushInterval   = time.Second // bounds what a crash can lose
	clusterMinVideo = 1000        // ms: a video keyframe after this starts a cluster
	clusterMax      = 5000        // ms: no cluster is longer than this
)

var (
	idSegment  = []byte{0x18, 0x53, 0x80, 0x67}
	idInfo     = []byte{0x15, 0x49, 0xA9, 0x66}
	idTracks   = []byte{0x16, 0x54, 0xAE, 0x6B}
	idCues     = []byte{0x1C, 0x53, 0xBB, 0x6B}
	idCluster  = []byte{0x1F, 0x43, 0xB6, 0x75}
	sizeUnk8   = []byte{0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}
	errClosed  = errors.New("recording file already closed")
	durPattern = []byte{0x44, 0x89, 0x88} // Duration ID + size 8
)

// newMKVWriter creates path and writes the header for one track. docType is
// "webm" or "matroska".
func newMKVWriter(path, docType string, track webm.TrackEntry, created time.Time) (*mkvWriter, error) {
	f, err := openRecFile(path)
	if err != nil {
		return nil, err
	}
	w := &mkvWriter{f: f, video: track.Video != nil}
	hdr := struct {
		Header webm.EBMLHeader `ebml:"EBML"`
	}{webm.EBMLHeader{
		EBMLVersion: 1, EBMLReadVersion: 1, EBMLMaxIDLength: 4, EBMLMaxSizeLength: 8,
		DocType: docType, DocTypeVersion: 4, DocTypeReadVersion: 2,
	}}
	if err := ebml.Marshal(&hdr, &w.buf); err != nil {
		return nil, w.abort(err)
	}
	w.buf.Write(idSegment)
	w.segSizePos = int64(w.buf.Len())
	w.buf.Write(sizeUnk8)
	w.segData = int64(w.buf.Len())
	w.seekPos = w.segData
	w.buf.Write(voidElement(seekReserve))

	w.infoPos = int64(w.buf.Len())
	info := struct {
		Info webm.Info `ebml:"Info"`
	}{webm.Info{
		TimecodeScale: 1000000, MuxingApp: "starling recorder (ebml-go)", WritingApp: "starling",
		Duration: 1, DateUTC: created.UTC(),
	}}
	var ib bytes.Buffer
	if err := ebml.Marshal(&info, &ib); err != nil {
		return nil, w.abort(err)
	}
	i := bytes.Index(ib.Bytes(), durPattern)
	if i < 0 {
		return nil, w.abort(errors.New("mkv: Duration element not found in Info"))
	}
	w.durPos = w.infoPos + int64(i) + int64(len(durPattern))
	w.buf.Write(ib.Bytes())

	w.tracksPos = int64(w.buf.Len())
	tracks := struct {
		Tracks webm.Tracks `ebml:"Tracks"`
	}{webm.Tracks{TrackEntry: []webm.TrackEntry{track}}}
	if err := ebml.Marshal(&tracks, &w.buf); err != nil {
		return nil, w.abort(err)
	}
	if err := w.flush(); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, err
	}
	return w, nil
}

func (w *mkvWriter) abort(err error) error {
	_ = w.f.Close()
	_ = os.Remove(w.f.Name())
	return err
}

// voidElement is an EBML Void element of exactly n (>= 9) bytes.
func voidElement(n int) []byte {
	b := make([]byte, n)
	b[0] = 0xEC
	b[1] = 0x01
	binary.BigEndian.PutUint64(b[1:9], uint64(n-9))
	b[1] = 0x01 // 8-byte size marker; n-9 < 2^56
	return b
}

// WriteFrame appends one frame at timecode tc (ms, non-decreasing) with an
// expected duration dur (ms, used for the last frame's end).
func (w *mkvWriter) WriteFrame(tc int64, dur int64, keyframe bool, data []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errClosed
	}
	if !w.started {
		w.started = true
		w.firstTC = tc
		w.clusterTC = math.MinInt64
	}
	if tc < w.lastTC {
		tc = w.lastTC
	}
	age := tc - w.clusterTC
	newCluster := w.clusterTC == math.MinInt64 || age >= clusterMax ||
		(w.video && keyframe && age >= clusterMinVideo) || (!w.video && age >= 2000)
	if newCluster {
		if err := w.flush(); err != nil {
			return err
		}
		w.clusterTC = tc
		pos := w.end + int64(w.buf.Len())
		if keyframe || !w.video {
			w.cues = append(w.cues, webm.CuePoint{
				CueTime: uint64(tc - w.firstTC),
				CueTrackPositions: []webm.CueTrackPosition{{
					CueTrack: 1, CueClusterPosition: uint64(pos - w.segData),
				}},
			})
		}
		if err := w.closeCluster(); err != nil {
			return err
		}
		// Cluster with an unknown size, patched when the cluster ends, so a
		// file cut by a crash still parses.
		w.buf.Write(idCluster)
		w.clusterSizePos = pos + int64(len(idCluster))
		w.buf.Write(sizeUnk8)
		tcEl := struct {
			Timecode uint64 `ebml:"Timecode"`
		}{uint64(tc - w.firstTC)}
		if err := ebml.Marshal(&tcEl, &w.buf); err != nil {
			return w.fail(err)
		}
	}
	blk := struct {
		Block ebml.Block `ebml:"SimpleBlock"`
	}{ebml.Block{TrackNumber: 1, Timecode: int16(tc - w.clusterTC), Keyframe: keyframe, Data: [][]byte{data}}}
	if err := ebml.Marshal(&blk, &w.buf); err != nil {
		return w.fail(err)
	}
	w.lastTC, w.lastDur = tc, dur
	w.frames++
	if w.buf.Len() >= flushThreshold || time.Since(w.lastFlush) >= flushInterval {
		return w.flush()
	}
	return nil
}

// closeCluster writes the open cluster's size; its bytes are all in the
// file (a new cluster starts after a flush).
func (w *mkvWriter) closeCluster() error {
	if w.clusterSizePos == 0 {
		return nil
	}
	if w.clusterSizePos+8 > w.end {
		// the cluster's header never reached the file (cut by a failure)
		w.clusterSizePos = 0
		return nil
	}
	var sz [8]byte
	binary.BigEndian.PutUint64(sz[:], uint64(w.end-w.clusterSizePos-8))
	sz[0] = 0x01
	pos := w.clusterSizePos
	w.clusterSizePos = 0
	if _, err := w.f.WriteAt(sz[:], pos); err != nil {
		return w.fail(err)
	}
	return nil
}

// Frames is the number of frames written.
func (w *mkvWriter) Frames() int { return w.frames }

// Duration is the media time written so far.
func (w *mkvWriter) Duration() time.Duration {
	if !w.started || w.frames == 0 {
		return 0
	}
	return time.Duration(w.lastTC-w.firstTC+w.lastDur) * time.Millisecond
}

// flush writes the buffered complete elements; on failure the file is cut
// back to the last complete element and the writer is dead.
func (w *mkvWriter) flush() error {
	if w.err != nil {
		return w.err
	}
	if w.buf.Len() == 0 {
		return nil
	}
	n, err := w.f.Write(w.buf.Bytes())
	if err != nil {
		if n > 0 {
			_ = w.f.Truncate(w.end)
		}
		return w.fail(err)
	}
	w.end += int64(n)
	w.buf.Reset()
	w.lastFlush = time.Now()
	w.safeFrames, w.safeTC, w.safeDur = w.frames, w.lastTC, w.lastDur
	// Keep the Duration in the header current (8 bytes in place), so that
	// a file cut by a crash (kill -9, power loss) shows how long it is:
	// it then lacks only its Cues and the sizes of the Segment and the
	// last Cluster, which are "unknown" while writing and readers accept.
	w.patchDuration()
	return nil
}

// patchDuration writes the duration so far into the header; a failure is
// not fatal (Close writes it again).
func (w *mkvWriter) patchDuration() {
	if w.durPos == 0 || w.frames == 0 {
		return
	}
	var d [8]byte
	binary.BigEndian.PutUint64(d[:], math.Float64bits(float64(w.Duration().Milliseconds())))
	_, _ = w.f.WriteAt(d[:], w.durPos)
}

// FlushIfDue writes buffered frames older than flushInterval even when no
// new frame comes (a paused track), so a crash loses at most that long.
func (w *mkvWriter) FlushIfDue() error {
	if w.err != nil || w.closed || w.buf.Len() == 0 || time.Since(w.lastFlush) < flushInterval {
		return w.err
	}
	return w.flush()
}

func (w *mkvWriter) fail(err error) error {
	if w.err == nil {
		w.err = err
		// what the file holds: the frames of the last good flush
		w.frames, w.lastTC, w.lastDur = w.safeFrames, w.safeTC, w.safeDur
	}
	w.buf.Reset()
	return w.err
}

// Err is the first write error, if any.
func (w *mkvWriter) Err() error { return w.err }

// Close writes Cues, the SeekHead, Duration and Segment size, then closes
// the file. After a write error it still patches what fits in place
// (Duration, SeekHead without Cues), so the cut file plays with a duration.
func (w *mkvWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	ferr := w.flush()
	if w.clusterSizePos != 0 {
		// after a failure the file was cut at an element boundary: the
		// cluster ends where the file ends
		if err := w.closeCluster(); err != nil && ferr == nil {
			ferr = err
		}
	}
	cuesPos := int64(-1)
	if ferr == nil && len(w.cues) > 0 {
		cues := struct {
			Cues webm.Cues `ebml:"Cues"`
		}{webm.Cues{CuePoint: w.cues}}
		if err := ebml.Marshal(&cues, &w.buf); err == nil {
			pos := w.end
			if err := w.flush(); err == nil {
				cuesPos = pos
			}
		}
	}
	var errs []error
	if w.err != nil {
		errs = append(errs, w.err)
	}
	// Everything below overwrites bytes already in the file: it needs no
	// new space, so it works on a full disk too.
	seeks := []webm.Seek{
		{SeekID: idInfo, SeekPosition: uint64(w.infoPos - w.segData)},
		{SeekID: idTracks, SeekPosition: uint64(w.tracksPos - w.segData)},
	}
	if cuesPos >= 0 {
		seeks = append(seeks, webm.Seek{SeekID: idCues, SeekPosition: uint64(cuesPos - w.segData)})
	}
	var sb bytes.Buffer
	sh := struct {
		SeekHead webm.SeekHead `ebml:"SeekHead"`
	}{webm.SeekHead{Seek: seeks}}
	if err := ebml.Marshal(&sh, &sb); err == nil && sb.Len() <= seekReserve-9 {
		sb.Write(voidElement(seekReserve - sb.Len()))
		if _, err := w.f.WriteAt(sb.Bytes(), w.seekPos); err != nil {
			errs = append(errs, fmt.Errorf("writing seek head: %w", err))
		}
	}
	var d [8]byte
	binary.BigEndian.PutUint64(d[:], math.Float64bits(float64(w.Duration().Milliseconds())))
	if _, err := w.f.WriteAt(d[:], w.durPos); err != nil {
		errs = append(errs, fmt.Errorf("writing duration: %w", err))
	}
	var sz [8]byte
	binary.BigEndian.PutUint64(sz[:], uint64(w.end-w.segData))
	sz[0] = 0x01
	if _, err := w.f.WriteAt(sz[:], w.segSizePos); err != nil {
		errs = append(errs, fmt.Errorf("writing segment size: %w", err))
	}
	if err := w.f.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
