// Cluster mode across network namespaces: the head and three node agents each run in a network
// namespace of their own with its own 10.x address, connected by veth pairs to a bridge in a
// "hub" namespace where redis-server listens. Nothing is added to the namespace the test runs in:
// every link lives inside namespaces the test creates, and TearDown deletes them (also after a
// failed assertion). Needs root and a working `ip netns`; otherwise the test is skipped.
//
// It checks that nodes register with their own addresses, that the seed rules (locality,
// head-only) hold, and that an artifact made on one node is fetched by another across
// namespaces with its checksum.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cluster/artifacts.h"
#include "support/child_process.h"
#include "support/util.h"

extern char** environ;

namespace baton::cluster {
namespace {

using Json = nlohmann::json;

using Proc = testing::ChildProcess;
using testing::WaitFor;

const char* kPipeline = R"(name: netns
steps:
  - name: download
    uses: command
    with: {argv: [sh, -c, "mkdir -p out && head -c 150000 /dev/urandom > out/blob.bin"]}
    resources: {download_slot: 1}
  - name: analyze
    uses: sleep
    with: {seconds: 0.05}
    placement: {same_node_as: download}
  - name: document
    uses: fetch
    with: {from: download, path: out/blob.bin}
    placement: {labels: {role: head}}
)";

class NetnsClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for ip netns";
    std::filesystem::path build =
        std::getenv("BATON_BINARY_DIR")
            ? testing::BinaryDir()
            : std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path().parent_path();
    baton_ = (build / "src/cli/baton").string();
    ASSERT_TRUE(std::filesystem::exists(baton_)) << baton_;
    // Unique per run: pid and a random tag, so parallel or leftover runs never collide.
    std::random_device rd;
    const unsigned tag = rd() & 0xffff;
    const std::string base = "bt" + std::to_string(getpid()) + "-" + std::to_string(tag);
    subnet_ = "10." + std::to_string(100 + getpid() % 100) + "." + std::to_string(tag % 250) + ".";
    hub_ = base + "-hub";
    if (!Ip({"netns", "add", hub_}))
      GTEST_SKIP() << "ip netns add does not work here (no CAP_SYS_ADMIN or no iproute2)";
    created_.push_back(hub_);
    ASSERT_TRUE(Ip({"-n", hub_, "link", "set", "lo", "up"}));
    ASSERT_TRUE(Ip({"-n", hub_, "link", "add", "br0", "type", "bridge"}));
    ASSERT_TRUE(Ip({"-n", hub_, "addr", "add", subnet_ + "1/24", "dev", "br0"}));
    ASSERT_TRUE(Ip({"-n", hub_, "link", "set", "br0", "up"}));
    int host = 10;
    for (const std::string member : {"head", "a", "b", "c"}) {
      const std::string ns = base + "-" + member, veth = "v" + member;
      ASSERT_TRUE(Ip({"netns", "add", ns}));
      created_.push_back(ns);
      ASSERT_TRUE(Ip({"-n", ns, "link", "set", "lo", "up"}));
      ASSERT_TRUE(Ip({"-n", hub_, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns}));
      ASSERT_TRUE(Ip({"-n", hub_, "link", "set", veth, "master", "br0"}));
      ASSERT_TRUE(Ip({"-n", hub_, "link", "set", veth, "up"}));
      ASSERT_TRUE(Ip({"-n", ns, "addr", "add", subnet_ + std::to_string(host) + "/24", "dev", "eth0"}));
      ASSERT_TRUE(Ip({"-n", ns, "link", "set", "eth0", "up"}));
      ns_[member] = ns;
      ip_[member] = subnet_ + std::to_string(host++);
    }
    url_ = "redis://" + subnet_ + "1:6379";
  }

  void TearDown() override {
    procs_.clear();  // SIGKILL and reap every process before its namespace goes
    for (auto it = created_.rbegin(); it != created_.rend(); ++it) Ip({"netns", "del", *it});
  }

  bool Ip(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"ip"};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunProgram(argv, (dir_ / "ip.log").string()) == 0;
  }
  // argv run inside namespace `ns`.
  std::vector<std::string> In(const std::string& ns, std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"ip", "netns", "exec", ns});
    return argv;
  }
  Proc& Start(const std::string& ns, const std::vector<std::string>& argv, const std::string& log) {
    procs_.push_back(std::make_unique<Proc>(In(ns, argv), dir_ / log));
    return *procs_.back();
  }
  void StartNode(const std::string& name, const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {baton_, "node", "--redis", url_, "--prefix", "nt", "--name", name, "--workdir",
                                     (dir_ / ("work-" + name)).string(), "--address", ip_[name], "--listen", ip_[name],
                                     "--heartbeat", "0.2s", "--cpus", "2"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    Start(ns_[name], argv, name + ".log");
  }
  // A baton client command run from the head's namespace; parsed JSON of its stdout.
  Json Client(std::vector<std::string> args) {
    std::vector<std::string> argv = {baton_};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--redis", url_, "--prefix", "nt"});
    const auto out = dir_ / "client.json";
    std::filesystem::remove(out);
    if (testing::RunProgram(In(ns_["head"], argv), out.string()) != 0) return Json();
    Json j = Json::parse(testing::ReadFile(out), nullptr, false);
    return j.is_discarded() ? Json() : j;
  }
  std::string Logs() {
    std::string s;
    for (const char* f : {"client.json", "ip.log", "redis.log", "head.log", "a.log", "b.log", "c.log", "submit.log"})
      s += std::string("--- ") + f + "\n" + testing::ReadFile(dir_ / f);
    return s;
  }

  testing::TempDir dir_;
  std::string baton_, subnet_, hub_, url_;
  std::vector<std::string> created_;
  std::map<std::string, std::string> ns_, ip_;
  std::vector<std::unique_ptr<Proc>> procs_;
};

TEST_F(NetnsClusterTest, HeadAndNodesInTheirOwnNamespacesFetchAcrossThem) {
  // No password on a network of the test's own: protected mode would refuse the other namespaces.
  Start(hub_, {"redis-server", "--port", "6379", "--bind", subnet_ + "1", "--protected-mode", "no", "--save", "",
               "--appendonly", "no", "--dir", dir_.path().string()},
        "redis.log");
  ASSERT_TRUE(WaitFor([&] { return Client({"nodes", "--json"}).is_array(); }, 10)) << Logs();
  Start(ns_["head"], {baton_, "head", "--redis", url_, "--prefix", "nt", "--heartbeat-timeout", "2s"}, "head.log");
  StartNode("a", {"--gpus", "0", "--labels", "role=head"});
  // --keep-work: the producers' copies are compared below, after the jobs succeeded.
  StartNode("b", {"--gpus", "1", "--resources", "download_slot=1", "--keep-work"});
  StartNode("c", {"--gpus", "1", "--resources", "download_slot=1", "--keep-work"});
  Json nodes;
  ASSERT_TRUE(WaitFor([&] {
    nodes = Client({"nodes", "--json"});
    int alive = 0;
    for (const auto& n : nodes) alive += n.value("alive", false);
    return alive == 3;
  }, 15)) << nodes.dump() << Logs();
  // Each node registered the address of its own namespace (and the port its server bound).
  for (const auto& n : nodes) {
    const std::string name = n.value("name", "");
    ASSERT_TRUE(ip_.count(name)) << n.dump();
    EXPECT_EQ(n.value("address", "").rfind(ip_[name] + ":", 0), 0u) << n.dump();
  }

  const auto pipeline = dir_ / "netns.yaml";
  std::ofstream(pipeline) << kPipeline;
  Proc& submit = Start(
      ns_["head"], {baton_, "submit", pipeline.string(), "--jobs", "4", "--redis", url_, "--prefix", "nt", "--wait"},
      "submit.log");
  ASSERT_EQ(submit.Wait(25), 0) << Logs();
  std::set<std::string> producers;
  for (int i = 0; i < 4; ++i) {
    const std::string id = "job-" + std::to_string(i);
    Json j = Client({"status", id, "--json"});
    ASSERT_EQ(j.value("state", ""), "succeeded") << j.dump();
    std::map<std::string, std::string> node_of;
    for (const auto& a : j["attempts"])
      if (a.value("status", "") == "ok") node_of[a.value("step", "")] = a.value("node", "");
    // Locality: analyze where the download ran; head-only: the document step on a.
    EXPECT_TRUE(node_of["download"] == "b" || node_of["download"] == "c") << j.dump();
    EXPECT_EQ(node_of["analyze"], node_of["download"]) << j.dump();
    EXPECT_EQ(node_of["document"], "a") << j.dump();
    producers.insert(node_of["download"]);
    // The artifact crossed namespaces: a's copy has the producer's checksum and size.
    const auto original = dir_ / ("work-" + node_of["download"]) / id / "out/blob.bin";
    ASSERT_TRUE(std::filesystem::exists(original)) << original;
    const Json& r = j["results"]["document"];
    EXPECT_EQ(r.value("sha256", ""), Sha256File(original));
    EXPECT_EQ(r.value("bytes", 0), 150000);
    EXPECT_EQ(r.value("path", "").rfind((dir_ / "work-a").string(), 0), 0u) << r.dump();
  }
  EXPECT_FALSE(producers.empty());
}

}  // namespace
}  // namespace baton::cluster
