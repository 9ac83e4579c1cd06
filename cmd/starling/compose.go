package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/starling-rtc/starling/recorder"
)

// runCompose is `starling compose [flags] MANIFEST`: it renders a recording
// into one playable file with ffmpeg (see docs/recording.md).
func runCompose(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("starling compose", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "output `file` (default: composed.mp4 beside the manifest); the extension picks the container")
	width := fs.Int("width", 1280, "output width in pixels")
	height := fs.Int("height", 720, "output height in pixels")
	fps := fs.Int("fps", 30, "output frame rate")
	font := fs.String("font", "", "font `file` for participant names (default: DejaVu Sans, else fc-match sans)")
	noNames := fs.Bool("no-names", false, "do not draw participant names on tiles")
	ffmpeg := fs.String("ffmpeg", "ffmpeg", "ffmpeg `binary`")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: starling compose [flags] MANIFEST\n\n"+
			"Renders a recording (its manifest.json) into one file: a grid of every video over time,\n"+
			"names on tiles, all audio mixed with the recorded offsets. Needs ffmpeg.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	// flags may follow the manifest too
	var pos []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) != 1 {
		fs.Usage()
		fmt.Fprintln(stderr, "starling compose: want exactly one MANIFEST argument")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err := recorder.Compose(ctx, recorder.ComposeOptions{
		Manifest: pos[0], Output: *out, Width: *width, Height: *height, FPS: *fps,
		FontFile: *font, NoNames: *noNames, FFmpeg: *ffmpeg, Progress: stdout,
	})
	if err != nil {
		fmt.Fprintln(stderr, "starling compose:", err)
		return 1
	}
	return 0
}
