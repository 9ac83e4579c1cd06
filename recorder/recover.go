package recorder

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/at-wat/ebml-go/webm"
)

// A recording cut by a crash (kill -9, power loss) has files without Cues,
// with the Segment and its last Cluster of "unknown" size and a Duration as
// of the last flush, and a manifest still saying "recording" with frame
// counts up to manifestEvery old. Players and ffprobe read such files;
// Recover makes them final as a clean stop would have: it scans each file,
// cuts a half-written element off the end, gives every Cluster and the
// Segment their size, appends Cues, writes the SeekHead and Duration, and
// rewrites the manifest with what the files hold.

// mkvScan is what a scan of one of our WebM/Matroska files found.
type mkvScan struct {
	valid        int64 // bytes up to the end of the last complete element
	size         int64 // file size
	segSizePos   int64 // offset of the Segment's size field
	segSizeLen   int
	segData      int64
	segKnown     bool
	seekPos      int64 // the reserved Void at the Segment's start (0: none)
	infoPos      int64
	tracksPos    int64
	durPos       int64 // the Duration float (8 bytes), 0 if none
	video        bool
	hasCues      bool
	frames       int
	firstTC      int64
	lastTC       int64
	cues         []webm.CuePoint
	openClusters []int64 // size-field offsets of unknown-size clusters (8-byte fields)
	lastCluster  int64   // size-field offset of the last cluster
}

// duration is the media time the scan found (the last frame counts one
// average frame interval).
func (s *mkvScan) duration() time.Duration {
	if s.frames == 0 {
		return 0
	}
	return time.Duration(s.lastTC-s.firstTC+s.frameDur()) * time.Millisecond
}

func (s *mkvScan) frameDur() int64 {
	if s.frames > 1 {
		if d := (s.lastTC - s.firstTC) / int64(s.frames-1); d > 0 && d < 1000 {
			return d
		}
	}
	if s.video {
		return 33
	}
	return 20
}

// final says whether the file was finalised (Cues and a Segment size).
func (s *mkvScan) final() bool { return s.hasCues && s.segKnown && s.valid == s.size }

// ebmlReader reads EBML elements and tracks the offset.
type ebmlReader struct {
	r   *bufio.Reader
	pos int64
}

var errTruncated = errors.New("truncated element")

func (e *ebmlReader) vint(keepMarker bool) (v uint64, n int, unknown bool, err error) {
	b, err := e.r.ReadByte()
	if err != nil {
		return 0, 0, false, err
	}
	e.pos++
	n = 1
	for mask := byte(0x80); mask != 0 && b&mask == 0; mask >>= 1 {
		n++
	}
	if n > 8 {
		return 0, 0, false, errors.New("bad EBML length")
	}
	v = uint64(b)
	if !keepMarker {
		v &= uint64(0xFF >> n)
	}
	allOnes := v == uint64(0xFF>>n)
	for i := 1; i < n; i++ {
		c, err := e.r.ReadByte()
		if err != nil {
			return 0, 0, false, errTruncated
		}
		e.pos++
		v = v<<8 | uint64(c)
		if c != 0xFF {
			allOnes = false
		}
	}
	return v, n, !keepMarker && allOnes, nil
}

// header reads an element's ID and size.
func (e *ebmlReader) header() (id uint64, size int64, sizeLen int, unknown bool, err error) {
	id, _, _, err = e.vint(true)
	if err != nil {
		return
	}
	var sz uint64
	sz, sizeLen, unknown, err = e.vint(false)
	if errors.Is(err, io.EOF) {
		err = errTruncated
	}
	return id, int64(sz), sizeLen, unknown, err
}

func (e *ebmlReader) skip(n int64) error {
	d, err := e.r.Discard(int(n))
	e.pos += int64(d)
	if err != nil {
		return errTruncated
	}
	return nil
}

func (e *ebmlReader) read(n int64) ([]byte, error) {
	b := make([]byte, n)
	k, err := io.ReadFull(e.r, b)
	e.pos += int64(k)
	if err != nil {
		return nil, errTruncated
	}
	return b, nil
}

const (
	ebmlID        = 0x1A45DFA3
	segmentID     = 0x18538067
	clusterID     = 0x1F43B675
	cuesID        = 0x1C53BB6B
	infoID        = 0x1549A966
	tracksID      = 0x1654AE6B
	voidID        = 0xEC
	timecodeID    = 0xE7
	simpleBlockID = 0xA3
	blockGroupID  = 0xA0
	durationID    = 0x4489
	trackEntryID  = 0xAE
	trackTypeID   = 0x83
)

// scanMKV reads a file written by mkvWriter (or one cut short).
func scanMKV(path string) (*mkvScan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	s := &mkvScan{size: st.Size(), firstTC: -1}
	e := &ebmlReader{r: bufio.NewReaderSize(f, 64<<10)}
	id, size, _, _, err := e.header()
	if err != nil || id != ebmlID {
		return nil, fmt.Errorf("%s: not a Matroska/WebM file", path)
	}
	if err := e.skip(size); err != nil {
		return nil, fmt.Errorf("%s: truncated header", path)
	}
	id, size, sl, unknown, err := e.header()
	if err != nil || id != segmentID {
		return nil, fmt.Errorf("%s: no Segment", path)
	}
	s.segSizePos, s.segSizeLen = e.pos-int64(sl), sl
	s.segData, s.segKnown = e.pos, !unknown
	segEnd := int64(math.MaxInt64)
	if !unknown {
		segEnd = s.segData + size
	}
	s.valid = e.pos
	var next *elemHeader // a top-level header an unknown-size cluster read
	for e.pos < segEnd || next != nil {
		var h elemHeader
		if next != nil {
			h, next = *next, nil
		} else {
			h.start = e.pos
			if h.id, h.size, h.sl, h.unknown, err = e.header(); err != nil {
				break // the end, or a header cut off
			}
		}
		dataStart := e.pos
		switch h.id {
		case clusterID:
			n, err := s.scanCluster(e, h.start, dataStart, h.size, h.sl, h.unknown)
			if err != nil {
				return s, nil
			}
			next = n
			if n == nil {
				s.valid = e.pos
			}
			continue
		case infoID:
			s.infoPos = h.start
			b, err := e.read(h.size)
			if err != nil {
				return s, nil
			}
			if i := bytes.Index(b, []byte{0x44, 0x89, 0x88}); i >= 0 {
				s.durPos = dataStart + int64(i) + 3
			}
		case tracksID:
			s.tracksPos = h.start
			b, err := e.read(h.size)
			if err != nil {
				return s, nil
			}
			// TrackType (0x83, size 1): 1 = video
			if i := bytes.Index(b, []byte{trackTypeID, 0x81}); i >= 0 && i+2 < len(b) {
				s.video = b[i+2] == 1
			}
		case voidID:
			if s.seekPos == 0 && h.start == s.segData {
				s.seekPos = h.start
			}
			if e.skip(h.size) != nil {
				return s, nil
			}
		case cuesID:
			s.hasCues = true
			if e.skip(h.size) != nil {
				return s, nil
			}
		default:
			if h.unknown || e.skip(h.size) != nil {
				return s, nil
			}
		}
		s.valid = e.pos
	}
	return s, nil
}

type elemHeader struct {
	id      uint64
	size    int64
	sl      int
	unknown bool
	start   int64
}

// scanCluster reads one cluster's blocks. For an unknown-size cluster it
// stops at the next top-level element and returns its header.
func (s *mkvScan) scanCluster(e *ebmlReader, start, data, size int64, sl int, unknown bool) (*elemHeader, error) {
	s.lastCluster = data - int64(sl)
	if unknown && sl == 8 {
		s.openClusters = append(s.openClusters, data-int64(sl))
	}
	end := int64(math.MaxInt64)
	if !unknown {
		end = data + size
	}
	tc := int64(0)
	first := true
	for e.pos < end {
		cstart := e.pos
		id, csize, csl, cunk, err := e.header()
		if err != nil {
			return nil, err
		}
		switch id {
		case timecodeID:
			b, err := e.read(csize)
			if err != nil {
				return nil, err
			}
			tc = 0
			for _, c := range b {
				tc = tc<<8 | int64(c)
			}
		case simpleBlockID:
			if csize < 4 {
				if e.skip(csize) != nil {
					return nil, errTruncated
				}
				break
			}
			b, err := e.read(csize)
			if err != nil {
				return nil, err
			}
			// track number (vint, 1 byte for track 1), int16 timecode, flags
			rel := int64(int16(binary.BigEndian.Uint16(b[1:3])))
			key := b[3]&0x80 != 0
			at := tc + rel
			if s.firstTC < 0 {
				s.firstTC = at
			}
			if at > s.lastTC {
				s.lastTC = at
			}
			s.frames++
			if first && (key || !s.video) {
				s.cues = append(s.cues, webm.CuePoint{CueTime: uint64(at), CueTrackPositions: []webm.CueTrackPosition{{
					CueTrack: 1, CueClusterPosition: uint64(start - s.segData)}}})
			}
			first = false
		case clusterID, cuesID, infoID, tracksID, 0x114D9B74, 0x1254C367, 0x1043A770:
			if unknown { // the next top-level element ends this cluster
				s.valid = cstart
				return &elemHeader{id, csize, csl, cunk, cstart}, nil
			}
			return nil, errors.New("top-level element inside a cluster")
		default:
			if cunk || e.skip(csize) != nil {
				return nil, errTruncated
			}
		}
		s.valid = e.pos
	}
	return nil, nil
}

// RecoveredFile is what Recover did to one file.
type RecoveredFile struct {
	File     string
	Repaired bool // false: it was already final
	CutBytes int64
	Frames   int
	Duration time.Duration
}

// recoverFile makes one file final in place (see the comment at the top).
func recoverFile(path string) (RecoveredFile, error) {
	res := RecoveredFile{File: path}
	s, err := scanMKV(path)
	if err != nil {
		return res, err
	}
	res.Frames, res.Duration = s.frames, s.duration()
	if s.final() {
		return res, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return res, err
	}
	if s.valid < s.size {
		if err := f.Truncate(s.valid); err != nil {
			f.Close()
			return res, err
		}
		res.CutBytes = s.size - s.valid
	}
	if _, err := f.Seek(s.valid, io.SeekStart); err != nil {
		f.Close()
		return res, err
	}
	// every cluster but the last has its size already (the writer patches
	// a cluster when the next begins); patch any left unknown
	for _, pos := range s.openClusters {
		if pos == s.lastCluster {
			continue
		}
		f.Close()
		return res, fmt.Errorf("%s: a cluster before the last has no size: not written by the recorder", path)
	}
	if s.segSizeLen != 8 || s.seekPos == 0 {
		f.Close()
		return res, fmt.Errorf("%s: layout not written by the recorder", path)
	}
	w := &mkvWriter{f: f, end: s.valid, segSizePos: s.segSizePos, segData: s.segData, seekPos: s.seekPos,
		infoPos: s.infoPos, tracksPos: s.tracksPos, durPos: s.durPos, video: s.video, started: s.frames > 0,
		firstTC: s.firstTC, lastTC: s.lastTC, lastDur: s.frameDur(), cues: s.cues, frames: s.frames}
	if len(s.openClusters) > 0 && s.openClusters[len(s.openClusters)-1] == s.lastCluster {
		w.clusterSizePos = s.lastCluster
	}
	if s.hasCues {
		w.cues = nil // already there (cut after them?): do not write twice
	}
	if err := w.Close(); err != nil {
		return res, err
	}
	res.Repaired = true
	return res, nil
}

// RecoverReport is what Recover did to a recording folder.
type RecoverReport struct {
	Files    []RecoveredFile
	Unlisted []string // files of the folder the manifest does not name
	Manifest *Manifest
}

// Recover repairs a recording folder left by a crash: every file is made
// final (see recoverFile) and the manifest is rewritten with the frame
// counts and durations the files hold; a recording still marked
// "recording" becomes "failed" with the error "interrupted". A folder that
// is already final is left as it is.
func Recover(dir string) (*RecoverReport, error) {
	mpath := filepath.Join(dir, ManifestFile)
	m, err := ReadManifest(mpath)
	if err != nil {
		return nil, err
	}
	rep := &RecoverReport{Manifest: m}
	listed := map[string]bool{}
	var end int64
	for i := range m.Tracks {
		t := &m.Tracks[i]
		if t.File == "" {
			continue
		}
		listed[t.File] = true
		rf, err := recoverFile(filepath.Join(dir, t.File))
		if err != nil {
			return rep, fmt.Errorf("track %s: %w", t.ID, err)
		}
		rep.Files = append(rep.Files, rf)
		if t.Recording || rf.Repaired {
			t.Frames, t.DurationMS = rf.Frames, rf.Duration.Milliseconds()
			t.EndMS = t.StartMS + t.DurationMS
			t.Recording = false
		}
		if t.EndMS > end {
			end = t.EndMS
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, en := range entries {
		n := en.Name()
		if (strings.HasSuffix(n, ".webm") || strings.HasSuffix(n, ".mkv")) && !listed[n] && n != "composed.mp4" {
			rep.Unlisted = append(rep.Unlisted, n)
			if rf, err := recoverFile(filepath.Join(dir, n)); err == nil {
				rep.Files = append(rep.Files, rf)
			}
		}
	}
	sort.Strings(rep.Unlisted)
	if m.Status == "recording" {
		m.Status = "failed"
		m.Error = "interrupted: the server stopped without finalising the recording (repaired by starling recover)"
		ended := m.StartedAt.Add(time.Duration(end) * time.Millisecond)
		m.EndedAt = &ended
		m.DurationMS = end
	}
	if err := writeManifest(dir, m); err != nil {
		return rep, err
	}
	return rep, nil
}

// probeUnfinished fills in, for tracks of a manifest still marked as
// recording (a crash), the frames and end that their files hold, reading
// them without changing them.
func probeUnfinished(m *Manifest, dir string) (n int) {
	for i := range m.Tracks {
		t := &m.Tracks[i]
		if t.File == "" || !t.Recording {
			continue
		}
		s, err := scanMKV(filepath.Join(dir, t.File))
		if err != nil {
			continue
		}
		t.Frames, t.DurationMS = s.frames, s.duration().Milliseconds()
		t.EndMS = t.StartMS + t.DurationMS
		n++
	}
	return n
}
