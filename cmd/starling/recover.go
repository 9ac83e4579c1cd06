package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/starling-rtc/starling/recorder"
)

// runRecover is `starling recover DIR...`: it makes the files of a
// recording cut by a crash final and completes its manifest (see
// docs/recording.md, "Crashes").
func runRecover(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("starling recover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: starling recover DIR...\n\n"+
			"Repairs recording folders left by a crash (kill -9, power loss): cuts a half-written\n"+
			"frame off each file, writes its index (Cues), sizes and duration, and rewrites\n"+
			"manifest.json with what the files hold (status \"failed\", error \"interrupted\").\n"+
			"A folder that is already final is left unchanged.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		fmt.Fprintln(stderr, "starling recover: want at least one recording folder")
		return 2
	}
	code := 0
	for _, dir := range fs.Args() {
		rep, err := recorder.Recover(dir)
		if err != nil {
			fmt.Fprintf(stderr, "starling recover: %s: %v\n", dir, err)
			code = 1
			continue
		}
		for _, f := range rep.Files {
			what := "already final"
			if f.Repaired {
				what = "repaired"
				if f.CutBytes > 0 {
					what += fmt.Sprintf(" (cut %d bytes of a half-written frame)", f.CutBytes)
				}
			}
			fmt.Fprintf(stdout, "%s: %d frames, %.3f s, %s\n", filepath.Base(f.File), f.Frames, f.Duration.Seconds(), what)
		}
		for _, n := range rep.Unlisted {
			fmt.Fprintf(stdout, "%s: not in the manifest (created just before the crash): repaired, not composed\n", n)
		}
		fmt.Fprintf(stdout, "%s: manifest status %q\n", dir, rep.Manifest.Status)
	}
	return code
}
