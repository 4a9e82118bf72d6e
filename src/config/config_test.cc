// Pipeline and cluster files: every mistake gives one line naming file, line and key.
#include <gtest/gtest.h>

#include "baton/pipeline.h"
#include "support/util.h"

namespace baton {
namespace {

std::string ErrorOf(const std::string& yaml) {
  auto p = ParsePipeline(yaml, "p.yaml");
  return p.ok() ? "(no error)" : p.error();
}

const char* kGood = R"(name: demo
prefetch: 2
steps:
  - name: download
    uses: sleep
    with: {seconds: 1}
    resources: {download_slot: 1, memory: 2Gi}
  - name: analyze
    uses: sleep
    resources: {gpu: 0.5}
    prefer: {gpu: 1}
    placement: {same_node_as: download}
    retries: 3
    backoff: 250ms
    timeout: 2m
  - name: document
    uses: sleep
    placement:
      labels: {role: head}
)";

TEST(PipelineFile, LoadsEveryKey) {
  PipelineSpec p = ParsePipeline(kGood, "p.yaml").value();
  EXPECT_EQ(p.name, "demo");
  EXPECT_EQ(p.prefetch, 2);
  ASSERT_EQ(p.steps.size(), 3u);
  EXPECT_EQ(p.steps[0].resources.at("memory"), 2.0 * 1024 * 1024 * 1024);
  EXPECT_EQ(p.steps[0].with["seconds"], 1);
  EXPECT_EQ(p.steps[1].resources.at("gpu"), 0.5);
  EXPECT_EQ(p.steps[1].prefer.at("gpu"), 1);
  EXPECT_EQ(p.steps[1].same_node_as, "download");
  EXPECT_EQ(p.steps[1].retries, 3);
  EXPECT_DOUBLE_EQ(p.steps[1].backoff, 0.25);
  EXPECT_DOUBLE_EQ(p.steps[1].timeout, 120);
  EXPECT_EQ(p.steps[2].labels.at("role"), "head");
  EXPECT_EQ(p.steps[2].line, 16);
}

TEST(PipelineFile, UnknownKeyNamesFileLineAndKey) {
  EXPECT_EQ(ErrorOf("steps:\n  - name: a\n    uses: sleep\n    resource: {cpu: 1}\n"),
            "p.yaml:4: steps[0].resource: unknown key (allowed: backoff, max_backoff, name, placement, prefer, "
            "resources, retries, timeout, uses, with)");
  EXPECT_EQ(ErrorOf("name: x\nstep: []\n").substr(0, 20), "p.yaml:2: step: unkn");
}

TEST(PipelineFile, SameNodeAsMustNameAnEarlierStep) {
  EXPECT_EQ(ErrorOf("steps:\n  - name: a\n    uses: sleep\n    placement: {same_node_as: nope}\n"),
            "p.yaml:4: steps.a.placement.same_node_as: unknown step 'nope'");
  EXPECT_EQ(
      ErrorOf("steps:\n  - name: a\n    uses: sleep\n    placement: {same_node_as: b}\n  - name: b\n    uses: sleep\n"),
      "p.yaml:4: steps.a.placement.same_node_as: step 'b' comes later; same_node_as must name an earlier step");
}

TEST(PipelineFile, BadValuesAreNamed) {
  EXPECT_EQ(ErrorOf("steps:\n  - name: a\n    uses: sleep\n    timeout: soon\n"),
            "p.yaml:4: steps.a.timeout: 'soon' is not a duration (use 30, 30s, 5m, 1h or 250ms)");
  EXPECT_EQ(ErrorOf("steps:\n  - name: a\n    uses: sleep\n    resources: {cpu: -1}\n"),
            "p.yaml:4: steps.a.resources.cpu: must be a non-negative number");
  EXPECT_EQ(ErrorOf("steps:\n  - name: a\n    uses: sleep\n    resources: {gpu: 1.5}\n"),
            "p.yaml:4: steps.a.resources.gpu: more than one GPU must be a whole number (got 1.5)");
  EXPECT_EQ(ErrorOf("steps:\n  - name: a\n    uses: sleep\n    resources: {cpu: lots}\n"),
            "p.yaml:4: steps.a.resources.cpu: 'lots' is not a number");
  EXPECT_EQ(ErrorOf("steps:\n  - name: a\n    uses: sleep\n    retries: 1.5\n"),
            "p.yaml:4: steps.a.retries: '1.5' is not a whole number");
  EXPECT_EQ(ErrorOf("prefetch: 0\nsteps:\n  - name: a\n    uses: sleep\n"), "p.yaml:1: prefetch: must be >= 1 (got 0)");
}

// Inputs the fuzz targets found (fuzz/regressions/pipeline_yaml/): each was an exception other
// than LoadError, or an error of more than one line.
TEST(PipelineFile, FuzzFindingsAreOneLineLoadErrors) {
  EXPECT_EQ(ErrorOf("steps:\n  - name: a\n    uses: sleep\n    with: {seconds: 1e999}\n"),
            "p.yaml:4: steps.a.with: a number is out of range");
  const std::string huge(400, '9');
  EXPECT_EQ(ErrorOf("steps:\n  - name: a\n    uses: sleep\n    timeout: " + huge + "s\n"),
            "p.yaml:4: steps.a.timeout: '" + huge + "s' is not a duration (use 30, 30s, 5m, 1h or 250ms)");
  EXPECT_EQ(ErrorOf("[a]: 1\nsteps: []\n"), "p.yaml:1: invalid YAML: bad conversion");
  EXPECT_EQ(ErrorOf("steps:\n  - name: a\n    uses: sleep\n    \"x\\ny\": 1\n"),
            "p.yaml:4: steps[0].x y: unknown key (allowed: backoff, max_backoff, name, placement, prefer, resources, "
            "retries, timeout, uses, with)");
}

TEST(PipelineFile, DuplicateAndMissingNames) {
  EXPECT_EQ(ErrorOf("steps:\n  - name: a\n    uses: sleep\n  - name: a\n    uses: sleep\n"),
            "p.yaml:4: steps[1].name: duplicate step name 'a'");
  EXPECT_EQ(ErrorOf("steps:\n  - uses: sleep\n"), "p.yaml:2: steps[0].name: missing");
  EXPECT_EQ(ErrorOf("steps:\n  - name: a\n"),
            "p.yaml:2: steps.a.uses: missing (a built-in such as sleep, command, download, analyze, llm, document)");
  EXPECT_EQ(ErrorOf("name: x\n"), "p.yaml:1: steps: missing: a pipeline needs at least one step");
}

TEST(PipelineFile, MalformedYamlAndMissingFile) {
  EXPECT_EQ(ErrorOf("steps:\n  - name: [a\n").substr(0, 22), "p.yaml:3: invalid YAML");
  auto missing = LoadPipeline("/nonexistent/x.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.error(), "/nonexistent/x.yaml: cannot read pipeline file (no such file)");
}

TEST(ClusterFile, LoadsNodesAndPools) {
  ClusterSpec c = ParseCluster(R"(nodes:
  - name: head
    cpus: 16
    gpus: 2
    memory: 64Gi
    resources: {download_slot: 1}
    labels: {role: head}
    workdir: /data/baton
  - name: w1
    cpus: 8
pools: {llm: 8}
)", "c.yaml").value();
  ASSERT_EQ(c.nodes.size(), 2u);
  EXPECT_EQ(c.nodes[0].gpus, 2);
  EXPECT_EQ(c.nodes[0].memory, 64.0 * (1ull << 30));
  EXPECT_EQ(c.nodes[0].resources.at("download_slot"), 1);
  EXPECT_EQ(c.nodes[0].workdir, "/data/baton");
  EXPECT_EQ(c.pools.at("llm"), 8);
}

TEST(ClusterFile, ErrorsNameFileLineAndKey) {
  auto error = [](const std::string& yaml) {
    auto c = ParseCluster(yaml, "c.yaml");
    return c.ok() ? std::string("(no error)") : c.error();
  };
  EXPECT_EQ(error("nodes:\n  - name: a\n  - name: a\n"), "c.yaml:3: nodes[1].name: duplicate node name 'a'");
  EXPECT_EQ(error("nodes:\n  - name: a\n    gpu: 1\n").substr(0, 36), "c.yaml:3: nodes[0].gpu: unknown key ");
  EXPECT_EQ(error("nodes:\n  - name: a\n    gpus: 1.5\n"), "c.yaml:3: nodes.a.gpus: '1.5' is not a whole number");
  EXPECT_EQ(error("nodes:\n  - name: a\n    resources: {gpu: 1}\n"),
            "c.yaml:3: nodes.a.resources.gpu: use the node's gpus key instead");
}

TEST(Durations, ParseUnits) {
  EXPECT_DOUBLE_EQ(*ParseDuration("30"), 30);
  EXPECT_DOUBLE_EQ(*ParseDuration("1.5m"), 90);
  EXPECT_DOUBLE_EQ(*ParseDuration("250ms"), 0.25);
  EXPECT_DOUBLE_EQ(*ParseDuration("2h"), 7200);
  EXPECT_EQ(ParseDuration("-1s").status().message(), "'-1s' is not a duration (e.g. 30, 30s, 5m, 1h or 250ms)");
  EXPECT_FALSE(ParseDuration("1e999").ok());
  EXPECT_FALSE(ParseDuration(std::string(400, '9')).ok());
  EXPECT_DOUBLE_EQ(*ParseQuantity("512Mi"), 512.0 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(*ParseQuantity("2G"), 2e9);
  EXPECT_FALSE(ParseQuantity("2 apples").ok());
  EXPECT_FALSE(ParseQuantity("1e999").ok());
}

TEST(LocalNode, DescribesThisMachine) {
  NodeSpec n = DetectLocalNode();
  EXPECT_GE(n.cpus, 1);
  EXPECT_GT(n.memory, 0);
  EXPECT_EQ(n.labels.at("role"), "head");
  EXPECT_GE(n.gpus, 0);
}

}  // namespace
}  // namespace baton
