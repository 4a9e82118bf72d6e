// Inputs files: URLs, paths (absolute, relative to the file, with spaces and non-ASCII names),
// folders, globs, words, standard input, and the one-line errors.
#include "config/inputs.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "baton/inputs.h"
#include "baton/pipeline.h"
#include "support/util.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using Strings = std::vector<std::string>;

class InputsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* f : {"videos/a.mp4", "videos/b.MKV", "videos/notes.txt", "videos/deep/季度 报告.mp4",
                          "videos/deep/c d.webm", "videos/.hidden/x.mp4", "videos/.y.mp4", "audio/talk.mp3",
                          "empty/readme.txt"}) {
      fs::create_directories((root() / f).parent_path());
      std::ofstream(root() / f) << "x";
    }
  }
  fs::path root() const { return dir_.path(); }
  std::string P(const std::string& rel) const { return (root() / rel).string(); }
  Strings Read(const std::string& text) {
    std::ofstream(root() / "in.txt") << text;
    return ReadInputs(root() / "in.txt", &warnings_).value();
  }
  std::string ErrorOf(const std::string& text) {
    std::ofstream(root() / "in.txt") << text;
    auto r = ReadInputs(root() / "in.txt", &warnings_);
    return r.ok() ? "(no error)" : r.error();
  }

  testing::TempDir dir_;
  Strings warnings_;
};

TEST_F(InputsTest, BlankAndDuplicateLinesAreReportedAndSkipped) {
  EXPECT_EQ(Read("a\n\n# comment\nb\na\n  c  \n"), (Strings{"a", "b", "c"}));
  ASSERT_EQ(warnings_.size(), 2u);
  EXPECT_EQ(warnings_[0], P("in.txt") + ":2: blank line skipped");
  EXPECT_EQ(warnings_[1], P("in.txt") + ":5: duplicate of line 1 skipped");
  EXPECT_EQ(ErrorOf("\n# nothing\n"), P("in.txt") + ": no inputs (one URL, path, folder or glob per line)");
}

TEST_F(InputsTest, UrlsAndWordsAreKeptAsTheyAre) {
  EXPECT_EQ(Read("https://example.org/a b.mp4\nfile:///srv/x.mp4\nok\njob-7\n"),
            (Strings{"https://example.org/a b.mp4", "file:///srv/x.mp4", "ok", "job-7"}));
}

TEST_F(InputsTest, PathsAreAbsoluteOrRelativeToTheInputsFile) {
  const auto cwd = fs::current_path();
  fs::current_path("/");  // relative lines do not depend on where baton runs
  EXPECT_EQ(Read(P("audio/talk.mp3") + "\nvideos/a.mp4\n./videos/deep/../deep/c d.webm\nvideos/deep/季度 报告.mp4\n"),
            (Strings{P("audio/talk.mp3"), P("videos/a.mp4"), P("videos/deep/c d.webm"), P("videos/deep/季度 报告.mp4")}));
  fs::current_path(cwd);
}

TEST_F(InputsTest, FolderGivesItsMediaFilesRecursivelySortedWithoutHiddenOnes) {
  EXPECT_EQ(Read("videos\n"), (Strings{P("videos/a.mp4"), P("videos/b.MKV"), P("videos/deep/c d.webm"),
                                       P("videos/deep/季度 报告.mp4")}));
  EXPECT_TRUE(warnings_.empty());
  // A file named again after its folder is a duplicate, said once.
  warnings_.clear();
  EXPECT_EQ(Read("videos/deep\nvideos/deep/c d.webm\n").size(), 2u);
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_EQ(warnings_[0], P("in.txt") + ":2: duplicate of line 1 skipped");
}

TEST_F(InputsTest, GlobsMatchFilesSortedAndDoubleStarRecurses) {
  EXPECT_EQ(Read("videos/*.mp4\n"), (Strings{P("videos/a.mp4")}));
  EXPECT_EQ(Read("videos/**/*.mp4\n"), (Strings{P("videos/a.mp4"), P("videos/deep/季度 报告.mp4")}));
  EXPECT_EQ(Read("videos/*/c?d.webm\n" + P("") + "/*/talk.mp[34]\n"),
            (Strings{P("videos/deep/c d.webm"), P("audio/talk.mp3")}));
}

TEST_F(InputsTest, EachProblemIsOneLineNamingFileAndLine) {
  EXPECT_EQ(ErrorOf("ok\n/data/talk.mp4\n"), P("in.txt") + ":2: /data/talk.mp4: no such file or folder");
  EXPECT_EQ(ErrorOf("missing.mp4\n"), P("in.txt") + ":1: " + P("missing.mp4") + ": no such file or folder");
  EXPECT_EQ(ErrorOf("\nempty\n"),
            P("in.txt") +
                ":2: empty: the folder holds no media file (.mp4, .mkv, .webm, .mov, .mp3, .wav, ... see docs/cli.md)");
  EXPECT_EQ(ErrorOf("videos/*.avi\n"), P("in.txt") + ":1: videos/*.avi: the pattern matches no file");
  EXPECT_EQ(ErrorOf("x").find("no such file"), std::string::npos);  // a word is not a path
  auto absent = ReadInputs(root() / "absent.txt", &warnings_);
  ASSERT_FALSE(absent.ok());
  EXPECT_EQ(absent.error(), P("absent.txt") + ": cannot read inputs file (no such file)");
}

TEST_F(InputsTest, StandardInputReadsAgainstTheCurrentFolder) {
  std::istringstream in("videos/a.mp4\nhttps://example.org/v.mp4\n");
  EXPECT_EQ(ReadInputLines(in, "stdin", root(), &warnings_), (Strings{P("videos/a.mp4"), "https://example.org/v.mp4"}));
  std::istringstream bad("nope/x.mp4\n");
  try {
    ReadInputLines(bad, "stdin", root(), &warnings_);
    ADD_FAILURE() << "no error";
  } catch (const LoadError& e) {
    EXPECT_EQ(std::string(e.what()), "stdin:1: " + P("nope/x.mp4") + ": no such file or folder");
  }
}

TEST(MediaNames, ExtensionsCountCaseInsensitively) {
  EXPECT_TRUE(IsMediaFileName("a.MP4"));
  EXPECT_TRUE(IsMediaFileName("季度 报告.webm"));
  EXPECT_TRUE(IsMediaFileName("x.flac"));
  EXPECT_FALSE(IsMediaFileName("notes.txt"));
  EXPECT_FALSE(IsMediaFileName(".mp4"));
  EXPECT_FALSE(IsMediaFileName("mp4"));
}

// Read one at a time (what `baton run` streams): duplicates are looked for among the first
// `dedupe_limit` distinct inputs only, so memory stays bounded; a warning says where that stops.
TEST(InputLines, DuplicatesAreLookedForUpToTheLimitThenNoLonger) {
  std::istringstream in("a\nb\na\nc\na\n");
  Strings warnings, got;
  InputLines lines(in, "in.txt", fs::current_path(), &warnings, 3);
  for (std::string s; lines.Next(&s);) got.push_back(s);
  EXPECT_EQ(got, (Strings{"a", "b", "c", "a"}));
  EXPECT_EQ(lines.count(), 4u);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_EQ(warnings[0], "in.txt:3: duplicate of line 1 skipped");
  EXPECT_EQ(warnings[1], "in.txt:4: 3 inputs: duplicates are no longer looked for after this line");
}

// InputStream: a bad line ends the stream with its one-line error; the inputs before it came.
TEST(InputStream, ABadLineEndsTheStreamWithItsError) {
  testing::TempDir dir;
  std::ofstream(dir.path() / "in.txt") << "one\ntwo\n/no/such/file.mp4\nthree\n";
  Strings warnings, got;
  auto stream = InputStream::Open(dir.path() / "in.txt", &warnings);
  ASSERT_TRUE(stream.ok()) << stream.error();
  for (std::string s; (*stream)->Next(&s);) got.push_back(s);
  EXPECT_EQ(got, (Strings{"one", "two"}));
  EXPECT_EQ((*stream)->status().message(),
            (dir.path() / "in.txt").string() + ":3: /no/such/file.mp4: no such file or folder");
  EXPECT_FALSE(InputStream::Open(dir.path() / "missing.txt", &warnings).ok());
}

}  // namespace
}  // namespace baton
