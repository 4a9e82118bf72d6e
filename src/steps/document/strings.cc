#include "steps/document/strings.h"

#include <map>

namespace baton::document {
namespace {

struct Row {
  const char* key;
  const char* en;
  const char* hans;
  const char* hant;
};

// Keep one row per line: translators read down a column.
constexpr Row kRows[] = {
    {"colon", ": ", "：", "："},
    {"source", "Source", "来源", "來源"},
    {"job", "Job", "任务", "任務"},
    {"generated", "Generated", "生成日期", "產生日期"},
    {"contents", "Contents", "目录", "目錄"},
    {"media", "Media", "媒体信息", "媒體資訊"},
    {"summary", "Summary", "摘要", "摘要"},
    {"chapters", "Chapters", "章节", "章節"},
    {"chapter", "Chapter {}", "第 {} 章", "第 {} 章"},
    {"chapter_span", "Chapter {} ({}–{})", "第 {} 章（{}–{}）", "第 {} 章（{}–{}）"},
    {"keyframe_of", "Keyframe of chapter {}", "第 {} 章的关键帧", "第 {} 章的關鍵影格"},
    {"on_screen", "On-screen text", "屏幕文字", "螢幕文字"},
    {"speech", "Speech", "语音", "語音"},
    {"no_on_screen", "No on-screen text.", "没有屏幕文字。", "沒有螢幕文字。"},
    {"no_speech", "No speech in this chapter.", "本章没有语音。", "本章沒有語音。"},
    {"transcript", "Transcript", "文字记录", "逐字稿"},
    {"record", "Processing record", "处理记录", "處理紀錄"},
    {"col_step", "step", "步骤", "步驟"},
    {"col_node", "node", "节点", "節點"},
    {"col_attempt", "attempt", "尝试", "嘗試"},
    {"col_status", "status", "状态", "狀態"},
    {"col_seconds", "seconds", "秒", "秒"},
    {"col_gpus", "GPUs", "GPU", "GPU"},
    {"status_ok", "ok", "成功", "成功"},
    {"status_failed", "failed", "失败", "失敗"},
    {"status_timeout", "timeout", "超时", "逾時"},
    {"status_lost", "lost", "节点丢失", "節點遺失"},
    {"status_cancelled", "cancelled", "已取消", "已取消"},
    {"tokens", "Tokens: {}", "Token 用量：{}", "Token 用量：{}"},
    {"tokens_line", "{} prompt + {} completion tokens in {} request(s) to {}",
     "提示 {} 个 token + 生成 {} 个 token，共 {} 次请求（{}）",
     "提示 {} 個 token + 生成 {} 個 token，共 {} 次請求（{}）"},
    {"footer", "Made by Baton.", "由 Baton 生成。", "由 Baton 產生。"},
    {"fact_duration", "Duration", "时长", "時長"},
    {"fact_duration_value", "{} ({:.1f} s)", "{}（{:.1f} 秒）", "{}（{:.1f} 秒）"},
    {"fact_container", "Container", "容器格式", "容器格式"},
    {"fact_resolution", "Resolution", "分辨率", "解析度"},
    {"fact_fps", "Frame rate", "帧率", "影格率"},
    {"fact_fps_value", "{:.3g} fps", "{:.3g} 帧/秒", "{:.3g} 格/秒"},
    {"fact_video_codec", "Video codec", "视频编码", "視訊編碼"},
    {"fact_video", "Video", "视频", "視訊"},
    {"none", "none", "无", "無"},
    {"fact_audio", "Audio", "音频", "音訊"},
    {"fact_audio_value", "{}, {:.0f} Hz, {:.0f} channel(s)", "{}，{:.0f} Hz，{:.0f} 声道",
     "{}，{:.0f} Hz，{:.0f} 聲道"},
    {"fact_no_audio", "none (no audio track)", "无（没有音轨）", "無（沒有音軌）"},
    {"fact_file", "File", "文件", "檔案"},
    {"fact_size", "Size", "大小", "大小"},
    {"fact_device", "Analysed on", "分析设备", "分析裝置"},
    {"summary_missing", "No summary: no result from step '{}' (with.summary_from).",
     "没有摘要：步骤“{}”没有结果（with.summary_from）。", "沒有摘要：步驟「{}」沒有結果（with.summary_from）。"},
    {"summary_empty", "No summary: step '{}' returned an empty summary.", "没有摘要：步骤“{}”返回了空摘要。",
     "沒有摘要：步驟「{}」傳回了空摘要。"},
    {"summary_extractive", "Made by the offline extractive summariser: no LLM was used; sentences are quoted verbatim.",
     "由离线抽取式摘要器生成：未使用大语言模型，句子均为原文引用。",
     "由離線擷取式摘要器產生：未使用大型語言模型，句子均為原文引用。"},
    {"summary_by", "Summary by {} / {}.", "摘要由 {} / {} 生成。", "摘要由 {} / {} 產生。"},
    {"no_transcript_speech", "No transcript: no speech was recognised in the audio.",
     "没有文字记录：音频中没有识别出语音。", "沒有逐字稿：音訊中沒有辨識出語音。"},
    {"no_transcript_audio", "No transcript: the video has no audio track.", "没有文字记录：视频没有音轨。",
     "沒有逐字稿：影片沒有音軌。"},
    {"no_transcript_engine", "No transcript: {}",
     "没有文字记录：语音未转写。PocketSphinx 没有中文模型；请使用 command 引擎（例如 whisper.cpp -l zh，见 "
     "docs/steps/analyze.md）。",
     "沒有逐字稿：語音未轉寫。PocketSphinx 沒有中文模型；請使用 command 引擎（例如 whisper.cpp -l zh，見 "
     "docs/steps/analyze.md）。"},
    {"no_chapters", "No chapters: no scenes were detected.", "没有章节：未检测到场景。", "沒有章節：未偵測到場景。"},
    {"no_keyframe", "No keyframe for this chapter.", "本章没有关键帧。", "本章沒有關鍵影格。"},
    {"keyframe_unavailable", "Keyframe unavailable ({}): {}", "关键帧不可用（{}）：{}", "關鍵影格無法使用（{}）：{}"},
    {"no_record", "No processing record was available.", "没有可用的处理记录。", "沒有可用的處理紀錄。"},
    {"transcript_by", "Transcript by {} ({}, step {}).", "文字记录由 {} 生成（{}，步骤 {}）。",
     "逐字稿由 {} 產生（{}，步驟 {}）。"},
    {"models", "From models", "模型补充", "模型補充"},
    {"captions", "Captions", "画面描述", "畫面描述"},
    {"transcript_in", "Transcript in {}", "{} 文字记录", "{} 文字記錄"},
    {"tags", "Tags", "标签", "標籤"},
    {"labels", "Labels", "类别", "類別"},
    {"notes", "Notes", "备注", "備註"},
    {"section_by", "{} by {} (step {})", "{}：{}（步骤 {}）", "{}：{}（步驟 {}）"},
    {"unknown", "unknown", "未知", "未知"},
};

}  // namespace

const std::string& Tr(std::string_view ui, std::string_view key) {
  using Table = std::map<std::string, std::string, std::less<>>;
  static const auto tables = [] {
    std::map<std::string, Table, std::less<>> t;
    for (const auto& r : kRows) {
      t["en"][r.key] = r.en;
      t["zh-Hans"][r.key] = r.hans;
      t["zh-Hant"][r.key] = r.hant;
    }
    return t;
  }();
  auto table = tables.find(ui);
  if (table == tables.end()) table = tables.find("en");
  if (auto it = table->second.find(key); it != table->second.end()) return it->second;
  static const std::string unknown = "?";
  auto en = tables.find("en")->second.find(key);
  return en != tables.find("en")->second.end() ? en->second : unknown;
}

std::string FormatDate(std::string_view ui, std::time_t when) {
  std::tm tm{};
  gmtime_r(&when, &tm);
  if (ui == "zh-Hans" || ui == "zh-Hant") return fmt::format("{}年{}月{}日", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
  static constexpr const char* kMonths[] = {"January", "February", "March", "April", "May", "June", "July",
                                            "August", "September", "October", "November", "December"};
  return fmt::format("{} {} {}", tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900);
}

}  // namespace baton::document
