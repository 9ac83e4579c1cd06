// Package recorder records rooms to files: each published track into its
// own WebM or Matroska file (TrackRecorder, an sfu.Sink that never blocks
// the media path), a room's tracks into one folder with a manifest.json
// (Manager, RoomRecorder), and optionally the room's live audio mix. It
// serves the recording HTTP API, recovers files cut short by a crash,
// renders a finished recording into one composed video with ffmpeg
// (Compose), and in a cluster claims each room for one recording node,
// handing it over when that node leaves or dies (docs/recording.md).
package recorder
