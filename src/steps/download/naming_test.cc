// Pure parts of the download step: safe names, titles, Retry-After, backoff, media checks.
#include <gtest/gtest.h>

#include <ctime>

#include "steps/download/download.h"

namespace baton {
namespace {

TEST(SafeFileName, KeepsPlainNamesAndExtensions) {
  EXPECT_EQ(SafeFileName("https://example.org/videos/talk-01.mp4"), "talk-01.mp4");
  EXPECT_EQ(SafeFileName("https://example.org/a/b/My%20Talk%20(2).webm?x=1#t=3"), "My_Talk_2_.webm");
  EXPECT_EQ(SafeFileName("file:///tmp/x/clip.mkv"), "clip.mkv");
}

TEST(SafeFileName, NeverLeavesTheFolder) {
  EXPECT_EQ(SafeFileName("http://h/files/..%2F..%2Fetc%2Fpasswd"), "etc_passwd");
  EXPECT_EQ(SafeFileName("http://h/files/%00evil"), "evil");
  EXPECT_EQ(SafeFileName("http://h/files/.."), "download.bin");
  EXPECT_EQ(SafeFileName("http://h/files/%2e%2e"), "download.bin");
  EXPECT_EQ(SafeFileName("http://h/files/.hidden.mp4"), "hidden.mp4");
  EXPECT_EQ(SafeFileName("http://h/files/-rf.mp4"), "rf.mp4");
  EXPECT_EQ(SafeFileName("http://h/"), "download.bin");
  EXPECT_EQ(SafeFileName("http://h"), "download.bin");
  EXPECT_EQ(SafeFileName("http://h/%E8%A7%86%E9%A2%91.mp4"), "视频.mp4");  // any script stays
  EXPECT_EQ(SafeFileName("http://h/%E5%AD%A3%E5%BA%A6%E6%8A%A5%E5%91%8A.mp4"), "季度报告.mp4");
  EXPECT_EQ(SafeFileName("http://h/%FF%FE.mp4"), "download.mp4");         // invalid UTF-8 dropped
  EXPECT_EQ(SafeFileName("http://h/a%E2%80%AEb.mp4"), "a_b.mp4");         // bidi override dropped
  EXPECT_EQ(SafeFileName("http://h/%C0%AF%C0%AF.mp4"), "download.mp4");   // overlong '/' refused
  EXPECT_EQ(SafeFileName("http://h/a%5Cb%5C..%5Cc.mp4"), "a_b_.._c.mp4");
}

TEST(SafeFileName, BoundsLengthKeepingExtension) {
  const std::string name = SafeFileName("http://h/files/" + std::string(300, 'a') + ".mp4");
  EXPECT_EQ(name.size(), 120u);
  EXPECT_EQ(name.substr(name.size() - 4), ".mp4");
  EXPECT_EQ(name.substr(0, 116), std::string(116, 'a'));
  std::string cjk;
  for (int i = 0; i < 60; ++i) cjk += "%E5%AD%A3";  // 60 x 3 bytes
  const std::string long_cjk = SafeFileName("http://h/" + cjk + ".mp4");
  EXPECT_LE(long_cjk.size(), 120u);
  EXPECT_EQ((long_cjk.size() - 4) % 3, 0u) << "cut inside a character";
}

TEST(TitleFromFileName, ReadsLikeATitle) {
  EXPECT_EQ(TitleFromFileName("intro_to-ML.lecture_3.mp4"), "intro to ML lecture 3");
  EXPECT_EQ(TitleFromFileName("download.bin"), "download");
  EXPECT_EQ(TitleFromFileName("___.mp4"), "download");
  EXPECT_EQ(TitleFromFileName("季度报告.mp4"), "季度报告");
  EXPECT_EQ(TitleFromFileName(SafeFileName("http://h/%E5%AD%A3%E5%BA%A6%20%E6%8A%A5%E5%91%8A.mp4")), "季度 报告");
}

TEST(RetryAfterSeconds, DeltaSecondsAndDates) {
  const int64_t now = 1700000000;
  EXPECT_EQ(RetryAfterSeconds("1", now, 30), 1.0);
  EXPECT_EQ(RetryAfterSeconds(" 7 ", now, 30), 7.0);
  EXPECT_EQ(RetryAfterSeconds("120", now, 30), 30.0);  // capped
  EXPECT_EQ(RetryAfterSeconds("99999999999999999999999", now, 30), 30.0);
  char date[64];
  const time_t later = now + 10;
  std::tm tm{};
  gmtime_r(&later, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  EXPECT_EQ(RetryAfterSeconds(date, now, 30), 10.0);
  EXPECT_EQ(RetryAfterSeconds(date, now + 100, 30), 0.0);  // in the past: retry now
  EXPECT_EQ(RetryAfterSeconds(date, now - 100, 30), 30.0);
  EXPECT_FALSE(RetryAfterSeconds("soon", now, 30).has_value());
  EXPECT_FALSE(RetryAfterSeconds("", now, 30).has_value());
}

TEST(BackoffSeconds, DoublesCapsAndJitters) {
  EXPECT_DOUBLE_EQ(BackoffSeconds(1, 0.5, 30, 1.0), 0.5);
  EXPECT_DOUBLE_EQ(BackoffSeconds(3, 0.5, 30, 1.0), 2.0);
  EXPECT_DOUBLE_EQ(BackoffSeconds(3, 0.5, 30, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(BackoffSeconds(20, 0.5, 30, 1.0), 30.0);
  EXPECT_DOUBLE_EQ(BackoffSeconds(20, 0.5, 30, 0.5), 22.5);
}

TEST(MediaChecks, ContentTypesAndSniffing) {
  EXPECT_TRUE(IsNonMediaContentType("text/html; charset=utf-8"));
  EXPECT_TRUE(IsNonMediaContentType("Application/JSON"));
  EXPECT_TRUE(IsNonMediaContentType("text/plain"));
  EXPECT_FALSE(IsNonMediaContentType("video/mp4"));
  EXPECT_FALSE(IsNonMediaContentType("application/octet-stream"));
  EXPECT_FALSE(IsNonMediaContentType(""));
  EXPECT_TRUE(LooksLikeHtml("\xEF\xBB\xBF  \n<!DOCTYPE HTML><html>"));
  EXPECT_TRUE(LooksLikeHtml("<html lang=en>"));
  EXPECT_FALSE(LooksLikeHtml("\x00\x00\x00\x20" "ftypisom"));
  EXPECT_FALSE(LooksLikeHtml("<?xml version"));
}

}  // namespace
}  // namespace baton
