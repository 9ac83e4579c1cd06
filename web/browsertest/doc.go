// Package browsertest holds Starling's end-to-end tests of the web app in real
// browsers: an in-process server on loopback, headless Chromium (chromedp)
// or Firefox (puppeteer-core over WebDriver BiDi) with fake camera and
// microphone, and the app at /r/{room}. The package has no code of its own;
// see the _test.go files.
//
// The tests skip when the browser is missing, unless the environment says
// they run in CI (CI=true), where a missing browser fails them. Screenshots
// go to $STARLING_ARTIFACTS, or to starling-artifacts in os.TempDir().
package browsertest
