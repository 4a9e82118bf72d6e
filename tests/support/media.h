// Test media made at test time with ffmpeg and flite (argv only, no shell), once, into
// test-media-v1/ next to the test executable: ctest runs each test case as its own process, and
// they all share the files (each is written under a temporary name and renamed into place).
//
// The standard clip is two 6-second 1280x720 slides at 25 fps, each with large text and one
// sentence spoken by flite's `slt` voice starting 0.5 s into the slide (StandardSlides() says
// exactly what is shown and said). Every other file is derived from it, so they share content.
//
// Thread-safe: each helper makes its file on first call (under a mutex) and returns the cached
// path afterwards. Helpers throw std::runtime_error (with ffmpeg's log) when a tool fails.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace baton::testing {

struct SlideSpec {
  double seconds;
  std::string background;  // ffmpeg colour name
  std::string ink;         // text colour
  std::string text;        // shown (large, centered)
  std::string say;         // spoken from 0.5 s into the slide
};

// The slides of the standard clip: "Quarterly Results" then "Revenue grew twelve percent".
const std::vector<SlideSpec>& StandardSlides();

// Renders `slides` to `out` (extension picks the container) with the given codec arguments, e.g.
// {"-c:v", "libx264", "-c:a", "aac"}. `with_audio` false leaves the speech out.
void RenderSlides(const std::vector<SlideSpec>& slides, const std::filesystem::path& out,
                  const std::vector<std::string>& codec_args, bool with_audio = true);

// A video of CJK text slides, 6 s each at 1280x720 (ffmpeg drawtext in `font`, 56 px, lines as
// given), alternating navy/white and khaki/black, with a 440 Hz tone as the audio track. Written
// to `out` (h264 + aac); `work` holds the text files and ffmpeg's log. Throws on failure.
void MakeCjkSlidesVideo(const std::vector<std::string>& slides, const std::string& font,
                        const std::filesystem::path& work, const std::filesystem::path& out);

// The folder where the cached media live.
const std::filesystem::path& MediaDir();

const std::filesystem::path& Mp4Clip();          // h264 + aac, moov at the end (ffmpeg's default)
const std::filesystem::path& FaststartMp4Clip(); // the same with moov at the front
const std::filesystem::path& WebmClip();         // vp9 + opus
const std::filesystem::path& MkvClip();          // h264 + aac in Matroska (stream copy)
const std::filesystem::path& NoAudioClip();      // mp4, video only
const std::filesystem::path& AudioOnlyWav();     // the speech track as 16-bit PCM WAV
const std::filesystem::path& TruncatedMp4();     // first half of Mp4Clip's bytes
const std::filesystem::path& TruncatedFaststartMp4();  // first half of FaststartMp4Clip's bytes
const std::filesystem::path& ZeroByteFile();     // an empty "video.mp4"
const std::filesystem::path& TextFile();         // "notes.mp4" holding plain text

}  // namespace baton::testing
